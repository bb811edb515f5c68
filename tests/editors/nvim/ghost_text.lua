-- Driven by tests/editors/test_neovim.py: ghost text in a headless Neovim with qcn-lsp started
-- by editors/neovim. Types at several spots (a random-weight model answers nothing at some),
-- records every ghost-text update with the extmark it drew, moves the cursor away and back,
-- accepts with <Tab>, and checks <Tab>'s fallback to the user's own mapping.
--
--   QCN_TEST_FILE   the project file to open
--   QCN_TEST_SPOTS  JSON list of {line = 1-based line, keys = text typed after `A`}
--   QCN_TEST_OUT    where the JSON report goes
package.path = vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h")
  .. "/?.lua;"
  .. package.path
local h = require("harness")
local report = h.report

-- The user's own insert-mode keys, which qcn-lsp must fall back to without ghost text: a
-- plain mapping and a Lua expression mapping.
vim.keymap.set("i", "<Tab>", "[tab]")
vim.keymap.set("i", "<C-]>", function()
  return "[dismiss]"
end, { expr = true })

local function extmark_text(bufnr)
  local ghost = require("qcn_lsp.ghost")
  local marks = vim.api.nvim_buf_get_extmarks(bufnr, ghost.namespace, 0, -1, { details = true })
  if #marks == 0 then
    return nil
  end
  local details = marks[1][4]
  local first = {}
  for _, chunk in ipairs(details.virt_text or {}) do
    if chunk[2] == ghost.hl_group then
      table.insert(first, chunk[1])
    end
  end
  return {
    row = marks[1][2],
    col = marks[1][3],
    text = table.concat(first),
    virt_lines = #(details.virt_lines or {}),
  }
end

local function current_line(bufnr)
  local row = vim.api.nvim_win_get_cursor(0)[1]
  return vim.api.nvim_buf_get_lines(bufnr, row - 1, row, false)[1]
end

h.run(function()
  vim.cmd("edit " .. vim.fn.fnameescape(vim.env.QCN_TEST_FILE))
  local bufnr = vim.api.nvim_get_current_buf()
  local original = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
  local client = h.client()
  report.inline_provider = client.server_capabilities.inlineCompletionProvider ~= nil
  report.omnifunc = vim.bo[bufnr].omnifunc
  local ready_at = vim.loop.now()
  h.status_until(function(status)
    return status.engine.state == "ready"
  end, 90000)
  report.model_ready_ms = vim.loop.now() - ready_at

  local events = {}
  vim.api.nvim_create_autocmd("User", {
    pattern = "QcnGhostText",
    callback = function()
      local shown = require("qcn_lsp").ghost_text(bufnr)
      table.insert(events, {
        shown = shown ~= nil,
        text = shown and shown.text,
        streaming = shown and shown.streaming,
        extmark = extmark_text(bufnr),
        t = vim.loop.now(),
      })
    end,
  })
  local function final_ghost()
    local shown = require("qcn_lsp").ghost_text(bufnr)
    return shown and not shown.streaming and shown
  end

  report.spots = {}
  for _, spot in ipairs(vim.json.decode(vim.env.QCN_TEST_SPOTS)) do
    local result = { line = spot.line, keys = spot.keys }
    table.insert(report.spots, result)
    vim.api.nvim_buf_set_lines(bufnr, 0, -1, false, original)
    h.type("<Esc>" .. spot.line .. "GA")
    h.sleep(50)
    events = {}
    local typed_at = vim.loop.now()
    for _, key in ipairs(vim.split(spot.keys, "")) do
      h.type(key)
      h.sleep(30)
    end
    local shown = h.wait_for(final_ghost, 8000, 10)
    result.events = events
    if shown then
      result.first_ghost_ms = events[1] and (events[1].t - typed_at) or nil
      result.final = shown.text
      result.line_before = current_line(bufnr)
      -- The cursor leaves: the ghost text goes; it comes back: so does a completion.
      h.type("<Left>")
      result.cleared_on_move = h.wait_for(function()
        return require("qcn_lsp").ghost_text(bufnr) == nil
      end, 2000, 10) ~= nil
      h.type("<Right>")
      local again = h.wait_for(final_ghost, 8000, 10)
      if again then
        result.final_again = again.text
        local row = vim.api.nvim_win_get_cursor(0)[1]
        h.type("<Tab>")
        h.wait_for(function()
          return vim.api.nvim_buf_get_lines(bufnr, row - 1, row, false)[1] ~= result.line_before
        end, 2000, 10)
        local count = #vim.split(again.text, "\n", { plain = true })
        result.accepted_lines = vim.api.nvim_buf_get_lines(bufnr, row - 1, row - 1 + count, false)
      end
      h.type("<Esc>")
      h.sleep(50)
      if result.accepted_lines then
        break
      end
    end
    h.type("<Esc>")
    h.sleep(50)
  end

  -- No ghost text at a fresh line: <Tab> does what the user mapped it to.
  vim.api.nvim_buf_set_lines(bufnr, 0, -1, false, original)
  h.type("<Esc>Go<C-]><Tab>x<Esc>")
  h.wait_for(function()
    return vim.api.nvim_get_mode().mode == "n" and vim.api.nvim_buf_line_count(bufnr) > #original
  end, 3000, 20)
  report.fallback_line = vim.api.nvim_buf_get_lines(bufnr, -2, -1, false)[1]
end)
