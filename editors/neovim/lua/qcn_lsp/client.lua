-- One qcn-lsp client per project root: which command runs, what the client declares, and the
-- handlers for what the server sends (streamed completions, progress, messages, edits).
local M = {}

local levels = vim.log.levels

-- editors/neovim/lua/qcn_lsp/client.lua -> the checkout, whose `make` puts the server in .venv.
local checkout = vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h:h:h:h:h")
-- The server logs to stderr, which Neovim's lsp.log records as [ERROR] whatever the level:
-- only warnings and errors, then.
local DEFAULT_ARGS = { "--log-level", "WARNING" }

local by_root = {} -- root directory -> client id
local by_buffer = {} -- bufnr -> client id
local told_missing = false
local exiting = false

-- `qcn-lsp` on PATH, else the one `make` installed into this plugin's checkout.
function M.default_cmd()
  for _, program in ipairs({ "qcn-lsp", checkout .. "/.venv/bin/qcn-lsp" }) do
    if vim.fn.executable(program) == 1 then
      return vim.list_extend({ program }, DEFAULT_ARGS)
    end
  end
  return nil
end

local function tell_missing(program)
  if told_missing then
    return
  end
  told_missing = true
  vim.notify(
    ("qcn-lsp: cannot start the language server: `%s` is not on PATH or not executable. "):format(
      program
    )
      .. "Install it with `pipx install /path/to/qcn-lsp` (or `make install` in the checkout), "
      .. 'or point the plugin at it: require("qcn_lsp").setup({ cmd = { "/path/to/qcn-lsp/.venv/bin/qcn-lsp" } })',
    levels.ERROR
  )
end

function M.find_root(path, markers)
  local dir = vim.fn.fnamemodify(path, ":p:h")
  while true do
    for _, marker in ipairs(markers) do
      if vim.loop.fs_stat(dir .. "/" .. marker) then
        return dir
      end
    end
    local parent = vim.fn.fnamemodify(dir, ":h")
    if parent == dir then
      return vim.fn.fnamemodify(path, ":p:h")
    end
    dir = parent
  end
end

local MESSAGE_LEVELS = { levels.ERROR, levels.WARN, levels.INFO, levels.DEBUG }

local function handlers(opts)
  return {
    ["qcn/completionProgress"] = function(_, result, ctx)
      require("qcn_lsp.suggest").on_progress(result, ctx.client_id)
    end,
    ["$/progress"] = function(err, result, ctx, config)
      vim.lsp.handlers["$/progress"](err, result, ctx, config)
      require("qcn_lsp.progress").on_progress(result, ctx.client_id)
    end,
    ["window/showMessage"] = function(_, result)
      vim.notify(result.message, MESSAGE_LEVELS[result.type] or levels.INFO)
      return vim.NIL
    end,
    ["workspace/applyEdit"] = function(err, params, ctx, config)
      if opts.confirm_edits and not require("qcn_lsp.commands").confirm_edit(params) then
        return { applied = false, failureReason = "the user declined the edit" }
      end
      return vim.lsp.handlers["workspace/applyEdit"](err, params, ctx, config)
    end,
  }
end

local function client_config(root, cmd, opts)
  local init_options = vim.deepcopy(opts.settings or {})
  if opts.model then
    init_options.model = vim.tbl_extend("force", init_options.model or {}, { path = opts.model })
  end
  local capabilities = vim.tbl_deep_extend(
    "force",
    vim.lsp.protocol.make_client_capabilities(),
    opts.capabilities or {},
    {
      -- This client renders the streamed text (docs/protocol.md) and the inline answer.
      experimental = { qcnCompletionProgress = opts.ghost_text },
      textDocument = { inlineCompletion = { dynamicRegistration = false } },
    }
  )
  return {
    name = "qcn-lsp",
    cmd = cmd,
    root_dir = root,
    workspace_folders = { { uri = vim.uri_from_fname(root), name = vim.fn.fnamemodify(root, ":t") } },
    init_options = init_options,
    -- Answers `workspace/configuration` for the section `qcn` with the same settings.
    settings = { qcn = init_options },
    capabilities = capabilities,
    handlers = handlers(opts),
    on_exit = function(code, signal)
      by_root[root] = nil
      if code ~= 0 and not exiting then
        vim.schedule(function()
          vim.notify(
            ("qcn-lsp exited (code %d, signal %d); its messages are in %s"):format(
              code,
              signal or 0,
              vim.lsp.get_log_path()
            ),
            levels.ERROR
          )
        end)
      end
    end,
  }
end

local function start(bufnr, root, opts)
  local cmd = opts.cmd or M.default_cmd()
  if cmd == nil or vim.fn.executable(cmd[1]) ~= 1 then
    tell_missing(cmd and cmd[1] or "qcn-lsp")
    return nil
  end
  local config = client_config(root, cmd, opts)
  if vim.fn.has("nvim-0.10") == 1 then
    -- vim.lsp.start_client is deprecated from 0.11; clients are reused by root here.
    return vim.lsp.start(config, {
      bufnr = bufnr,
      reuse_client = function()
        return false
      end,
    })
  end
  return vim.lsp.start_client(config)
end

-- Start (or reuse) the client for the buffer's project and attach it; nil if it cannot run.
function M.attach(bufnr, opts)
  local path = vim.api.nvim_buf_get_name(bufnr)
  if path == "" or vim.bo[bufnr].buftype ~= "" then
    return nil
  end
  local root = M.find_root(path, opts.root_markers)
  local id = by_root[root]
  if id == nil or vim.lsp.get_client_by_id(id) == nil then
    id = start(bufnr, root, opts)
    if id == nil then
      return nil
    end
    by_root[root] = id
  end
  if not vim.lsp.buf_attach_client(bufnr, id) then
    return nil
  end
  by_buffer[bufnr] = id
  return id
end

-- The initialized client of `bufnr`, or nil.
function M.for_buffer(bufnr)
  local id = by_buffer[bufnr]
  local client = id and vim.lsp.get_client_by_id(id)
  if client == nil or not client.initialized or client.server_capabilities == nil then
    return nil
  end
  return client
end

vim.api.nvim_create_autocmd("VimLeavePre", {
  callback = function()
    exiting = true
  end,
})

return M
