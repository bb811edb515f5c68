-- The server's commands (docs/protocol.md): refactor, edit files, rewrite, status; and the
-- confirmation asked before the server's edit (`workspace/applyEdit`) touches any buffer.
local compat = require("qcn_lsp.compat")

local M = {}

local levels = vim.log.levels

local function client_for(bufnr)
  local client = require("qcn_lsp.client").for_buffer(bufnr)
  if client == nil then
    vim.notify(
      "qcn-lsp is not running for this buffer (it starts for the configured filetypes; "
        .. ":messages says why it did not start)",
      levels.WARN
    )
  end
  return client
end

-- Run `command` with one object argument; `on_result(result, err)` gets the answer.
local function execute(bufnr, command, argument, on_result)
  local client = client_for(bufnr)
  if client == nil then
    return false
  end
  local params = { command = command, arguments = argument and { argument } or {} }
  local ok = compat.request(client, "workspace/executeCommand", params, function(err, result)
    if err then
      vim.notify(err.message or vim.inspect(err), levels.ERROR)
    end
    if on_result then
      on_result(result, err)
    end
  end, bufnr)
  return ok
end

-- Tell the user what became of an edit command ({applied, cancelled, files, reason}).
local function say_outcome(what, result)
  if type(result) ~= "table" then
    return
  end
  if result.cancelled then
    vim.notify(("qcn-lsp: %s cancelled"):format(what), levels.INFO)
  elseif result.applied then
    local note = result.reason and result.reason ~= vim.NIL and ("; " .. result.reason) or ""
    local files = table.concat(result.files or {}, ", ")
    vim.notify(("qcn-lsp: %s applied to %s%s"):format(what, files, note), levels.INFO)
  else
    local reason = result.reason ~= vim.NIL and result.reason or "no reason given"
    vim.notify(("qcn-lsp: %s: nothing applied: %s"):format(what, reason), levels.WARN)
  end
end

local function edit_command(bufnr, what, command, argument, on_done)
  return execute(bufnr, command, argument, function(result, err)
    if not err then
      say_outcome(what, result)
    end
    vim.api.nvim_exec_autocmds("User", { pattern = "QcnCommandDone", modeline = false })
    if on_done then
      on_done(result, err)
    end
  end)
end

-- Ask the model to apply `instruction` to the symbol at the cursor, in every file using it.
function M.refactor(instruction, on_done)
  local bufnr = vim.api.nvim_get_current_buf()
  local client = client_for(bufnr)
  if client == nil then
    return false
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  local argument =
    { instruction = instruction, uri = params.textDocument.uri, position = params.position }
  return edit_command(bufnr, "refactor", "qcn.refactor", argument, on_done)
end

-- Ask the model to apply `instruction` to each of `paths` (default: the current buffer).
function M.edit_files(instruction, paths, on_done)
  local bufnr = vim.api.nvim_get_current_buf()
  if paths == nil or #paths == 0 then
    paths = { vim.api.nvim_buf_get_name(bufnr) }
  end
  local uris = {}
  for _, path in ipairs(paths) do
    table.insert(uris, vim.uri_from_fname(vim.fn.fnamemodify(path, ":p")))
  end
  local argument = { instruction = instruction, uris = uris }
  return edit_command(bufnr, "edit files", "qcn.editFiles", argument, on_done)
end

-- Ask the model to rewrite lines `first`..`last` (1-based, inclusive) of the current buffer.
function M.rewrite(instruction, first, last, on_done)
  local bufnr = vim.api.nvim_get_current_buf()
  local argument = {
    instruction = instruction,
    uri = vim.uri_from_bufnr(bufnr),
    -- Whole lines: from the first line's start to the start of the line after the last.
    range = { start = { line = first - 1, character = 0 }, ["end"] = { line = last, character = 0 } },
  }
  return edit_command(bufnr, "rewrite", "qcn.rewrite", argument, on_done)
end

-- The files of the listed buffers (`:ls`), for `:QcnEditFiles!`.
function M.listed_files()
  local paths = {}
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    local name = vim.api.nvim_buf_get_name(bufnr)
    if vim.bo[bufnr].buflisted and vim.bo[bufnr].buftype == "" and name ~= "" then
      table.insert(paths, name)
    end
  end
  return paths
end

local function summary(status)
  local engine = status.engine or {}
  local lines = { "qcn-lsp: engine " .. tostring(engine.state) }
  if engine.model then
    table.insert(
      lines,
      ("  model %s (%s, %s layers%s, context %s tokens)"):format(
        engine.model,
        tostring(engine.arch),
        tostring(engine.layers),
        engine.hybrid and ", hybrid" or "",
        tostring(engine.nCtx)
      )
    )
  end
  local index = status.index or {}
  table.insert(lines, "  index " .. tostring(index.state))
  local last = status.lastRequest
  if type(last) == "table" then
    table.insert(
      lines,
      ("  last completion: %s prompt tokens (%s reused, %s prefilled, restore %s), %s generated, %s ms"):format(
        tostring(last.promptTokens),
        tostring(last.reusedTokens),
        tostring(last.prefilledTokens),
        tostring(last.restoreKind),
        tostring(last.generatedTokens),
        tostring(last.ms and last.ms.total)
      )
    )
  end
  return table.concat(lines, "\n")
end

-- Engine, index and last request; `full`: the whole answer in a scratch buffer.
function M.status(full, on_done)
  local bufnr = vim.api.nvim_get_current_buf()
  return execute(bufnr, "qcn.status", nil, function(result, err)
    if not err and type(result) == "table" then
      if full then
        vim.cmd("new")
        vim.bo.buftype = "nofile"
        vim.bo.bufhidden = "wipe"
        vim.api.nvim_buf_set_lines(0, 0, -1, false, vim.split(vim.inspect(result), "\n"))
      else
        vim.notify(summary(result), levels.INFO)
      end
    end
    if on_done then
      on_done(result, err)
    end
  end)
end

local function edited_files(edit)
  local files = {}
  for uri in pairs(edit.changes or {}) do
    table.insert(files, uri)
  end
  for _, change in ipairs(edit.documentChanges or {}) do
    local uri = change.textDocument and change.textDocument.uri or change.newUri or change.uri
    if uri then
      table.insert(files, uri)
    end
  end
  for i, uri in ipairs(files) do
    files[i] = vim.fn.fnamemodify(vim.uri_to_fname(uri), ":~:.")
  end
  return files
end

-- Whether the user wants the server's edit applied (`workspace/applyEdit` waits for this).
function M.confirm_edit(params)
  local files = edited_files(params.edit or {})
  local question = ("%s\nApply the changes to %s?"):format(
    params.label or "qcn-lsp",
    table.concat(files, ", ")
  )
  return vim.fn.confirm(question, "&Apply\n&Cancel", 2) == 1
end

return M
