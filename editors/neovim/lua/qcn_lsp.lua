-- qcn-lsp for Neovim's built-in LSP client (works on 0.7+, which has vim.lsp.start_client).
--
--   require("qcn_lsp").setup({ model = "/path/to/model.gguf" })
--
-- starts one qcn-lsp per project root and attaches it to every buffer of the listed filetypes.
local M = {}

local defaults = {
  cmd = { "qcn-lsp" },
  filetypes = { "python", "javascript", "typescript", "rust", "go", "c", "cpp", "java", "lua" },
  root_markers = { ".git", "pyproject.toml", "package.json", "Cargo.toml", "go.mod" },
  model = nil, -- path of a GGUF model; also QCN_MODEL in the environment
  settings = {}, -- the `qcn` settings object (docs/configuration.md)
}

local clients = {} -- root directory -> client id

local function find_root(path, markers)
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

-- Start (or reuse) the client for the buffer's project and attach it; returns the client id.
function M.attach(bufnr, opts)
  opts = opts or M.options or defaults
  local path = vim.api.nvim_buf_get_name(bufnr)
  local root = find_root(path, opts.root_markers)
  local id = clients[root]
  if id == nil or vim.lsp.get_client_by_id(id) == nil then
    local init_options = vim.deepcopy(opts.settings)
    if opts.model then
      init_options.model = vim.tbl_extend("force", init_options.model or {}, { path = opts.model })
    end
    id = vim.lsp.start_client({
      name = "qcn-lsp",
      cmd = opts.cmd,
      root_dir = root,
      workspace_folders = { { uri = vim.uri_from_fname(root), name = vim.fn.fnamemodify(root, ":t") } },
      init_options = init_options,
    })
    clients[root] = id
  end
  vim.lsp.buf_attach_client(bufnr, id)
  return id
end

function M.setup(user_opts)
  M.options = vim.tbl_deep_extend("force", defaults, user_opts or {})
  vim.api.nvim_create_autocmd("FileType", {
    pattern = M.options.filetypes,
    callback = function(args)
      M.attach(args.buf, M.options)
    end,
  })
end

return M
