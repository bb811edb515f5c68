-- Minimal Neovim config that runs qcn-lsp: `nvim -u editors/neovim/init.lua file.py`.
-- QCN_LSP_CMD overrides the command (a JSON list), QCN_MODEL names the model, QCN_SETTINGS
-- holds `qcn` settings as JSON (docs/configuration.md).
local here = vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h")
vim.opt.runtimepath:prepend(here)
vim.opt.swapfile = false
vim.opt.statusline = "%f %m%=%{v:lua.require'qcn_lsp'.statusline()} %l:%c"

local function json_env(name)
  local value = vim.env[name]
  return value and value ~= "" and vim.fn.json_decode(value) or nil
end

require("qcn_lsp").setup({
  cmd = json_env("QCN_LSP_CMD"),
  model = vim.env.QCN_MODEL,
  settings = json_env("QCN_SETTINGS") or {},
})
