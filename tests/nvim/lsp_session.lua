-- Driven by tests/test_neovim.py: a headless Neovim 0.7 session with qcn-lsp attached through
-- editors/neovim. Writes one JSON object (what happened) to $QCN_TEST_OUT and quits.
--
--   QCN_TEST_FILE     the project file to open
--   QCN_TEST_OUT      where to write the report
local report = { notifications = {} }

local function finish()
  vim.fn.writefile({ vim.json.encode(report) }, vim.env.QCN_TEST_OUT)
  vim.cmd("qall!")
end

local ok, err = pcall(function()
  vim.notify = function(message, level)
    table.insert(report.notifications, { message = message, level = level })
  end
  vim.cmd("edit " .. vim.fn.fnameescape(vim.env.QCN_TEST_FILE))
  local bufnr = vim.api.nvim_get_current_buf()

  -- The FileType autocmd of editors/neovim started and attached the client.
  local client
  vim.wait(20000, function()
    client = vim.lsp.get_active_clients()[1]
    return client ~= nil and client.initialized
  end, 50)
  if client == nil or not client.initialized then
    error("qcn-lsp did not initialize")
  end
  report.server_name = client.name
  report.code_action_provider = client.server_capabilities.codeActionProvider
  report.completion_provider = client.server_capabilities.completionProvider ~= nil

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

  -- The model loads in the background after `initialized`: wait until resolve stops saying
  -- "loading" (with no model configured it fails at once with the reason).
  local deadline = vim.loop.now() + 90000
  repeat
    local warm = client.request_sync("codeAction/resolve", report.listed[1], 60000, bufnr)
    local message = warm and warm.err and warm.err.message or ""
    local loading = message:find("loading") ~= nil or message:find("not started") ~= nil
    if loading then
      vim.wait(250)
    end
  until not loading or vim.loop.now() > deadline

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
  vim.api.nvim_win_set_cursor(0, { 3, 11 })
  vim.lsp.buf.code_action({ diagnostics = { diagnostic } })
  vim.wait(60000, function()
    return chosen and (#report.notifications > 0 or vim.bo[bufnr].modified)
  end, 50)
  report.code_action_chosen = chosen
  report.buffer_modified = vim.bo[bufnr].modified
  report.lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
end)

if not ok then
  report.error = tostring(err)
end
finish()
