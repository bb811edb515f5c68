-- Ghost text: one extmark per buffer showing a completion at the cursor.
--
-- The first line of the completion is virtual text at the cursor, the other lines are virtual
-- lines below it. Before Neovim 0.10 virtual text cannot push the rest of the line aside, so it
-- is drawn over the line with the rest of the line redrawn after it (or, for multi-line text,
-- after the last virtual line, where it will be once the completion is accepted).
local compat = require("qcn_lsp.compat")

local M = {}

M.namespace = vim.api.nvim_create_namespace("qcn_lsp_ghost")
M.hl_group = "Comment"

local shown = {} -- bufnr -> { row, col, text, line, version, streaming, mark }

-- Text that goes into the buffer: no control characters but tab and newline ("\r\n" -> "\n").
function M.insertable(text)
  return (text:gsub("[%z\1-\8\11-\31\127]", ""))
end

local function displayable(text, tabstop)
  return (text:gsub("\t", string.rep(" ", tabstop)))
end

local function fire()
  vim.api.nvim_exec_autocmds("User", { pattern = "QcnGhostText", modeline = false })
end

function M.get(bufnr)
  return shown[bufnr]
end

function M.clear(bufnr)
  local state = shown[bufnr]
  if state == nil then
    return
  end
  shown[bufnr] = nil
  if vim.api.nvim_buf_is_valid(bufnr) then
    pcall(vim.api.nvim_buf_del_extmark, bufnr, M.namespace, state.mark)
  end
  fire()
end

-- Show `text` at (row, col) (0-based row, byte column) for the buffer's current version.
-- Replaces what was shown before; an empty text clears. Returns whether something is shown.
function M.show(bufnr, row, col, text, streaming)
  text = M.insertable(text or "")
  if not text:find("%S") then
    M.clear(bufnr)
    return false
  end
  local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1]
  if line == nil or col > #line then
    M.clear(bufnr)
    return false
  end
  local tabstop = vim.bo[bufnr].tabstop
  local lines = vim.split(displayable(text, tabstop), "\n", { plain = true })
  local rest = line:sub(col + 1)
  local opts = { hl_mode = "combine", priority = 200 }
  if #lines == 1 and compat.inline_virt_text then
    opts.virt_text = { { lines[1], M.hl_group } }
    opts.virt_text_pos = "inline"
  elseif #lines == 1 then
    opts.virt_text = { { lines[1], M.hl_group }, { rest, "Normal" } }
    opts.virt_text_pos = "overlay"
  else
    -- Cover the rest of the cursor line; it reappears after the last virtual line.
    local cover = vim.fn.strdisplaywidth(rest) - vim.fn.strdisplaywidth(lines[1])
    opts.virt_text = { { lines[1] .. string.rep(" ", math.max(cover, 0)), M.hl_group } }
    opts.virt_text_pos = "overlay"
    opts.virt_lines = {}
    for i = 2, #lines do
      table.insert(opts.virt_lines, { { lines[i], M.hl_group } })
    end
    table.insert(opts.virt_lines[#opts.virt_lines], { rest, "Normal" })
  end
  local previous = shown[bufnr]
  if previous ~= nil then
    pcall(vim.api.nvim_buf_del_extmark, bufnr, M.namespace, previous.mark)
  end
  local ok, mark = pcall(vim.api.nvim_buf_set_extmark, bufnr, M.namespace, row, col, opts)
  if not ok then
    shown[bufnr] = nil
    return false
  end
  shown[bufnr] = {
    row = row,
    col = col,
    text = text,
    line = line,
    version = compat.buf_version(bufnr),
    streaming = streaming and true or false,
    mark = mark,
  }
  fire()
  return true
end

return M
