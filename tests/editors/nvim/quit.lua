-- Driven by tests/editors/test_neovim.py and bench/shutdown.py: Neovim quits while the server
-- prefills. Opens the file, waits for the model, asks for a completion at QCN_TEST_LINE and,
-- QCN_TEST_DELAY_MS later (the prefill running), writes the report and quits with `:qall!`.
-- The caller times from the report's appearance to Neovim's exit and checks the server's pid.
--
--   QCN_TEST_FILE      the project file to open
--   QCN_TEST_LINE      0-based line of the completion
--   QCN_TEST_DELAY_MS  time between the request and the quit
--   QCN_TEST_OUT       where the JSON report goes
package.path = vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h")
  .. "/?.lua;"
  .. package.path
local h = require("harness")
local report = h.report

h.run(function()
  vim.cmd("edit " .. vim.fn.fnameescape(vim.env.QCN_TEST_FILE))
  local bufnr = vim.api.nvim_get_current_buf()
  local client = h.client()
  report.server_pid = client.rpc.pid
  h.status_until(function(status)
    return status.engine.state == "ready"
  end, 90000)
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    position = { line = tonumber(vim.env.QCN_TEST_LINE), character = 0 },
    context = { triggerKind = 1 },
  }
  require("qcn_lsp.compat").request(client, "textDocument/inlineCompletion", params, function(err)
    report.completion_error = err and err.message or vim.NIL
  end, bufnr)
  h.sleep(tonumber(vim.env.QCN_TEST_DELAY_MS))
  local seconds, microseconds = vim.loop.gettimeofday()
  report.quit_at = seconds + microseconds / 1e6
end)
