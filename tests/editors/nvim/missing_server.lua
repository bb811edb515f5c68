-- Driven by tests/editors/test_neovim.py: editors/neovim with a server command that does not
-- exist. Opens two files of the project and asks for :QcnStatus; records what the user saw.
--
--   QCN_TEST_FILES  JSON list of files to open
--   QCN_TEST_OUT    where the JSON report goes
package.path = vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h")
  .. "/?.lua;"
  .. package.path
local h = require("harness")
local report = h.report

h.run(function()
  for _, path in ipairs(vim.json.decode(vim.env.QCN_TEST_FILES)) do
    vim.cmd("edit " .. vim.fn.fnameescape(path))
    h.sleep(200)
  end
  report.before_status = #report.notifications
  vim.cmd("QcnStatus")
  h.sleep(100)
  report.errmsg = vim.v.errmsg
  report.clients = #vim.lsp.get_active_clients()
end)
