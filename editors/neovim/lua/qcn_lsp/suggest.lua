-- Completions while typing: debounced requests, streamed `qcn/completionProgress` text shown as
-- ghost text, accept (all / word / line) and dismiss.
--
-- Requests use `textDocument/inlineCompletion` when the server offers it, else the single
-- popup item of `textDocument/completion`. Only the latest request of a buffer counts; its
-- notifications replace the ghost text while the model writes, the response replaces them.
local compat = require("qcn_lsp.compat")
local ghost = require("qcn_lsp.ghost")

local M = {}

M.debounce_ms = 50

local INVOKED = 1 -- CompletionTriggerKind / InlineCompletionTriggerKind
local INLINE_AUTOMATIC = 2
local COMPLETION_FOR_INCOMPLETE = 3
-- A superseded request is answered with one of these: nothing to tell the user.
local QUIET_ERRORS = { [-32800] = true, [-32801] = true }

local pending = {} -- bufnr -> the buffer's latest request
local timers = {} -- bufnr -> debounce timer
local reported = {} -- automatic-request errors already shown once

local function clients()
  return require("qcn_lsp.client")
end

local function in_insert_mode()
  return vim.api.nvim_get_mode().mode:sub(1, 1) == "i"
end

local function cursor(bufnr)
  local win = vim.api.nvim_get_current_win()
  if vim.api.nvim_win_get_buf(win) ~= bufnr then
    return nil
  end
  local pos = vim.api.nvim_win_get_cursor(win)
  return pos[1] - 1, pos[2]
end

-- The request still describes the buffer: same version, cursor where it was asked.
local function still_here(bufnr, request)
  if not vim.api.nvim_buf_is_valid(bufnr) or not in_insert_mode() then
    return false
  end
  local row, col = cursor(bufnr)
  return row == request.row and col == request.col and compat.buf_version(bufnr) == request.version
end

-- The part of `new_text` after what the line already holds between `start` and the cursor.
local function beyond_cursor(bufnr, request, start, new_text, encoding)
  if start == nil or start.line ~= request.row then
    return start == nil and new_text or nil
  end
  local line = vim.api.nvim_buf_get_lines(bufnr, request.row, request.row + 1, false)[1] or ""
  local first = compat.byte_col(line, start.character, encoding)
  if first == nil or first > request.col then
    return nil
  end
  local typed = line:sub(first + 1, request.col)
  if new_text:sub(1, #typed) ~= typed then
    return nil
  end
  return new_text:sub(#typed + 1)
end

local function answer_text(bufnr, request, result)
  if type(result) ~= "table" then
    return nil
  end
  local item = (result.items or result)[1]
  if type(item) ~= "table" then
    return nil
  end
  local encoding = request.client.offset_encoding
  if request.inline then
    local text = item.insertText
    if type(text) == "table" then
      text = text.value
    end
    if type(text) ~= "string" then
      return nil
    end
    return beyond_cursor(bufnr, request, item.range and item.range.start, text, encoding)
  end
  local edit = item.textEdit
  if edit and edit.newText then
    return beyond_cursor(bufnr, request, (edit.range or edit.insert).start, edit.newText, encoding)
  end
  return item.insertText or item.label
end

local function report(message, invoked)
  if invoked then
    vim.notify(message, vim.log.levels.WARN)
  elseif not reported[message] then
    reported[message] = true
    vim.notify(message, vim.log.levels.WARN)
  end
end

local function on_response(bufnr, request, err, result)
  if pending[bufnr] ~= request then
    return -- superseded by a newer request
  end
  request.answered = true
  if err then
    if not QUIET_ERRORS[err.code] then
      report(err.message or vim.inspect(err), request.invoked)
    end
    return
  end
  if not still_here(bufnr, request) then
    return
  end
  local text = answer_text(bufnr, request, result)
  if not ghost.show(bufnr, request.row, request.col, text or "", false) and request.invoked then
    vim.notify("qcn-lsp: no completion here", vim.log.levels.INFO)
  end
end

function M.cancel(bufnr)
  local request = pending[bufnr]
  pending[bufnr] = nil
  if request and not request.answered then
    compat.cancel_request(request.client, request.id)
  end
end

-- Ask for a completion at the cursor. `invoked`: the user asked (errors are shown).
function M.request(bufnr, invoked)
  local client = clients().for_buffer(bufnr)
  local row, col = cursor(bufnr)
  if client == nil or row == nil then
    return false
  end
  M.cancel(bufnr)
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  local inline = client.server_capabilities.inlineCompletionProvider
  inline = inline ~= nil and inline ~= false
  local method = "textDocument/completion"
  params.context = { triggerKind = invoked and INVOKED or COMPLETION_FOR_INCOMPLETE }
  if inline then
    method = "textDocument/inlineCompletion"
    params.context = { triggerKind = invoked and INVOKED or INLINE_AUTOMATIC }
  end
  local request = {
    client = client,
    row = row,
    col = col,
    position = params.position,
    uri = params.textDocument.uri,
    invoked = invoked,
    inline = inline,
  }
  local ok, id = compat.request(client, method, params, function(err, result)
    on_response(bufnr, request, err, result)
  end, bufnr)
  if not ok then
    return false
  end
  request.id = id
  request.version = compat.buf_version(bufnr)
  pending[bufnr] = request
  return true
end

-- `qcn/completionProgress`: the growing text of the latest request, shown until it answers.
function M.on_progress(params, client_id)
  if type(params) ~= "table" or type(params.position) ~= "table" then
    return
  end
  for bufnr, request in pairs(pending) do
    if request.uri == params.uri and request.client.id == client_id then
      if
        not request.answered
        and params.version == request.version
        and params.position.line == request.position.line
        and params.position.character == request.position.character
        and still_here(bufnr, request)
      then
        ghost.show(bufnr, request.row, request.col, params.text or "", not params.done)
      end
      return
    end
  end
end

-- The user typed the start of the ghost text: keep showing the rest at the new cursor.
local function follow_typing(bufnr)
  local shown = ghost.get(bufnr)
  local row, col = cursor(bufnr)
  if shown == nil or row ~= shown.row or col == nil or col <= shown.col then
    return false
  end
  local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ""
  local typed = line:sub(shown.col + 1, col)
  if shown.text:sub(1, #typed) ~= typed then
    return false
  end
  if line ~= shown.line:sub(1, shown.col) .. typed .. shown.line:sub(shown.col + 1) then
    return false
  end
  return ghost.show(bufnr, row, col, shown.text:sub(#typed + 1), shown.streaming)
end

local function schedule(bufnr)
  local timer = timers[bufnr]
  if timer == nil then
    timer = vim.loop.new_timer()
    timers[bufnr] = timer
  end
  timer:stop()
  timer:start(
    M.debounce_ms,
    0,
    vim.schedule_wrap(function()
      if
        vim.api.nvim_buf_is_valid(bufnr)
        and vim.api.nvim_get_current_buf() == bufnr
        and in_insert_mode()
      then
        M.request(bufnr, false)
      end
    end)
  )
end

local function on_text_changed(bufnr)
  local shown = ghost.get(bufnr)
  -- Our own accept already re-rendered the rest for the new version.
  if not (shown and shown.version == compat.buf_version(bufnr)) and not follow_typing(bufnr) then
    ghost.clear(bufnr)
  end
  schedule(bufnr)
end

local function on_cursor_moved(bufnr)
  local shown = ghost.get(bufnr)
  -- After a keystroke the version has changed too: on_text_changed decides then.
  if shown and shown.version == compat.buf_version(bufnr) then
    local row, col = cursor(bufnr)
    if row ~= shown.row or col ~= shown.col then
      ghost.clear(bufnr)
      M.cancel(bufnr)
      schedule(bufnr)
    end
  end
end

function M.dismiss(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local had = ghost.get(bufnr) ~= nil
  local timer = timers[bufnr]
  if timer then
    timer:stop()
  end
  M.cancel(bufnr)
  ghost.clear(bufnr)
  return had
end

local function accepted_part(text, how)
  if how == "word" then
    return text:match("^%s*[%w_]+") or text:match("^%s*[^%w_%s]+") or text
  elseif how == "line" then
    return text:match("^\n?[^\n]*")
  end
  return text
end

-- Insert the ghost text (all of it, the next word or the rest of its line) at the cursor.
-- Returns false when there is no ghost text at the cursor.
function M.accept(how)
  local bufnr = vim.api.nvim_get_current_buf()
  local shown = ghost.get(bufnr)
  local row, col = cursor(bufnr)
  if shown == nil or row ~= shown.row or col ~= shown.col then
    return false
  end
  local part = accepted_part(shown.text, how)
  local lines = vim.split(part, "\n", { plain = true })
  M.cancel(bufnr)
  vim.api.nvim_buf_set_text(bufnr, row, col, row, col, lines)
  local end_row = row + #lines - 1
  local end_col = (#lines == 1 and col or 0) + #lines[#lines]
  vim.api.nvim_win_set_cursor(0, { end_row + 1, end_col })
  local rest = shown.text:sub(#part + 1)
  if rest == "" or not ghost.show(bufnr, end_row, end_col, rest, shown.streaming) then
    ghost.clear(bufnr)
  end
  return true
end

-- Keys -----------------------------------------------------------------------------------------

local function termcodes(keys)
  return vim.api.nvim_replace_termcodes(keys, true, true, true)
end

local function feed(keys, remap)
  vim.api.nvim_feedkeys(keys, remap and "im" or "in", false)
end

-- What the key did before qcn-lsp mapped it in `bufnr`: the user's mapping, or nil.
-- (nvim_*get_keymap, not maparg(): only they give Lua callbacks as functions on 0.7.)
local function previous_mapping(bufnr, lhs)
  local wanted = termcodes(lhs)
  for _, maps in ipairs({ vim.api.nvim_buf_get_keymap(bufnr, "i"), vim.api.nvim_get_keymap("i") }) do
    for _, map in ipairs(maps) do
      if termcodes(map.lhs) == wanted then
        if type(map.desc) == "string" and map.desc:find("^qcn%-lsp") then
          return nil
        end
        return map
      end
    end
  end
  return nil
end

local function run_previous(lhs, map)
  if map == nil then
    feed(termcodes(lhs), false)
    return
  end
  local remap = map.noremap ~= 1
  local keys
  if map.callback then
    keys = map.callback()
    if map.expr ~= 1 or type(keys) ~= "string" then
      return
    end
    if map.replace_keycodes == 1 then
      keys = termcodes(keys)
    end
  elseif map.expr == 1 then
    keys = vim.api.nvim_eval(map.rhs)
  else
    keys = termcodes(map.rhs or "")
  end
  feed(keys, remap)
end

local function map_key(bufnr, lhs, desc, action)
  if not lhs or lhs == "" then
    return
  end
  local previous = previous_mapping(bufnr, lhs)
  vim.keymap.set("i", lhs, function()
    if not action(bufnr) then
      run_previous(lhs, previous)
    end
  end, { buffer = bufnr, desc = "qcn-lsp: " .. desc })
end

local attached = {}

-- Start suggesting in `bufnr` (once per buffer).
function M.attach(bufnr, keymaps)
  if attached[bufnr] then
    return
  end
  attached[bufnr] = true
  local group = vim.api.nvim_create_augroup("qcn_lsp_suggest_" .. bufnr, { clear = true })
  local function on(events, fn)
    vim.api.nvim_create_autocmd(events, {
      group = group,
      buffer = bufnr,
      callback = function()
        fn(bufnr)
      end,
    })
  end
  on({ "TextChangedI", "TextChangedP" }, on_text_changed)
  on("CursorMovedI", on_cursor_moved)
  on({ "InsertLeave", "BufLeave" }, M.dismiss)
  on("BufUnload", function()
    M.dismiss(bufnr)
    local timer = timers[bufnr]
    if timer then
      timer:close()
      timers[bufnr] = nil
    end
    attached[bufnr] = nil
    pcall(vim.api.nvim_del_augroup_by_id, group)
  end)
  keymaps = keymaps or {}
  map_key(bufnr, keymaps.accept, "accept ghost text", function()
    return M.accept("all")
  end)
  map_key(bufnr, keymaps.accept_word, "accept the next word", function()
    return M.accept("word")
  end)
  map_key(bufnr, keymaps.accept_line, "accept the rest of the line", function()
    return M.accept("line")
  end)
  map_key(bufnr, keymaps.dismiss, "dismiss ghost text", M.dismiss)
  map_key(bufnr, keymaps.trigger, "ask for a completion", function(b)
    return M.request(b, true)
  end)
end

return M
