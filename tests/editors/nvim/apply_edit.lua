-- Driven by tests/test_neovim.py (run with -u NONE): Neovim's own LSP utility applies a
-- WorkspaceEdit built by qcn_lsp.edits; the resulting buffers go to $QCN_TEST_OUT.
--
--   QCN_TEST_EDIT     the WorkspaceEdit as JSON
--   QCN_TEST_FILES    JSON list of the files to report on
local report = {}
local ok, err = pcall(function()
  vim.lsp.util.apply_workspace_edit(vim.json.decode(vim.env.QCN_TEST_EDIT), "utf-16")
  report.files = {}
  for _, path in ipairs(vim.json.decode(vim.env.QCN_TEST_FILES)) do
    local bufnr = vim.fn.bufadd(path)
    vim.fn.bufload(bufnr)
    report.files[path] = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
  end
end)
if not ok then
  report.error = tostring(err)
end
vim.fn.writefile({ vim.json.encode(report) }, vim.env.QCN_TEST_OUT)
vim.cmd("qall!")
