-- Driven by tests/editors/test_neovim.py: code actions through Neovim's own code-action flow
-- (list, resolve, apply what comes back) and, with a model, the plugin's commands, in a
-- headless Neovim with qcn-lsp started by editors/neovim.
--
--   QCN_TEST_FILE      the project file to open
--   QCN_TEST_COMMANDS  "1": also run :QcnRefactor, :QcnEditFiles, :QcnRewrite, :QcnStatus
--   QCN_TEST_OUT       where the JSON report goes
package.path = vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h")
  .. "/?.lua;"
  .. package.path
local h = require("harness")
local report = h.report

local function errors_and_warnings()
  local found = {}
  for _, n in ipairs(report.notifications) do
    if n.level >= vim.log.levels.WARN then
      table.insert(found, n.message)
    end
  end
  return found
end

h.run(function()
  vim.cmd("edit " .. vim.fn.fnameescape(vim.env.QCN_TEST_FILE))
  local bufnr = vim.api.nvim_get_current_buf()
  local client = h.client()
  report.server_name = client.name
  report.code_action_provider = client.server_capabilities.codeActionProvider
  report.completion_provider = client.server_capabilities.completionProvider ~= nil
  report.omnifunc = vim.bo[bufnr].omnifunc

  local diagnostic = {
    range = { start = { line = 2, character = 11 }, ["end"] = { line = 2, character = 14 } },
    message = "expected expression",
    source = "pyright",
  }
  local listed = client.request_sync("textDocument/codeAction", {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    range = diagnostic.range,
    context = { diagnostics = { diagnostic } },
  }, 10000, bufnr)
  report.listed = listed and listed.result

  -- The model loads in the background after `initialized`; with none configured the state
  -- says why at once.
  local status = h.status_until(function(s)
    return s.engine.state ~= "model still loading" and not s.engine.state:find("^not started")
  end, 90000)
  report.engine_state = status.engine.state

  if report.completion_provider then
    local response = client.request_sync("textDocument/completion", {
      textDocument = { uri = vim.uri_from_bufnr(bufnr) },
      position = { line = 1, character = 4 },
    }, 60000, bufnr)
    report.completion = response
  end

  -- Neovim's own code action flow: pick the first action, resolve it, apply what comes back.
  local chosen = false
  vim.ui.select = function(items, _, on_choice)
    chosen = true
    on_choice(items[1], 1)
  end
  local before = #report.notifications
  vim.api.nvim_win_set_cursor(0, { 3, 11 })
  vim.lsp.buf.code_action({ diagnostics = { diagnostic } })
  h.wait_for(function()
    return chosen and (#report.notifications > before or vim.bo[bufnr].modified)
  end, 60000, 50)
  report.code_action_chosen = chosen
  report.buffer_modified = vim.bo[bufnr].modified
  report.lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
  report.action_messages = errors_and_warnings()

  if vim.env.QCN_TEST_COMMANDS == "1" then
    local commands = require("qcn_lsp.commands")
    commands.confirm_edit = function(params)
      report.confirmed = params.label or true
      return true
    end
    -- Each edit command as the user types it, from the file's text, cursor on `add`.
    report.commands = {}
    for _, command in ipairs({
      "QcnRefactor rename add to plus",
      "QcnEditFiles add a docstring",
      "2,3QcnRewrite complete the expression",
    }) do
      vim.cmd("edit!")
      vim.api.nvim_win_set_cursor(0, { 2, 5 })
      local done = false
      vim.api.nvim_create_autocmd("User", {
        pattern = "QcnCommandDone",
        once = true,
        callback = function()
          done = true
        end,
      })
      local started = vim.loop.now()
      before = #report.notifications
      vim.cmd(command)
      h.wait_for(function()
        return done
      end, 120000, 50)
      local messages = {}
      for i = before + 1, #report.notifications do
        table.insert(messages, report.notifications[i])
      end
      table.insert(report.commands, {
        command = command,
        done = done,
        ms = vim.loop.now() - started,
        messages = messages,
        lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false),
      })
    end
    before = #report.notifications
    vim.cmd("QcnStatus")
    h.wait_for(function()
      return #report.notifications > before
    end, 10000, 20)
    report.status_message = report.notifications[before + 1]
  end
end)
