-- Minimal Neovim config that runs qcn-lsp: `nvim -u editors/neovim/init.lua file.py`.
-- QCN_LSP_CMD overrides the command (a JSON list), QCN_MODEL names the model, QCN_SETTINGS
-- holds `qcn` settings as JSON (docs/configuration.md).
local here = vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h")
vim.opt.runtimepath:prepend(here)
vim.opt.swapfile = false

local cmd = { "qcn-lsp" }
if vim.env.QCN_LSP_CMD then
  cmd = vim.fn.json_decode(vim.env.QCN_LSP_CMD)
end
local settings = {}
if vim.env.QCN_SETTINGS then
  settings = vim.fn.json_decode(vim.env.QCN_SETTINGS)
end
require("qcn_lsp").setup({ cmd = cmd, model = vim.env.QCN_MODEL, settings = settings })
