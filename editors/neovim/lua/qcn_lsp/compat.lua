-- The few client calls whose form changed between Neovim 0.7 and 0.11+.
local M = {}

local method_calls = vim.fn.has("nvim-0.11") == 1 -- 0.11 made client functions methods

function M.request(client, method, params, handler, bufnr)
  if method_calls then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

function M.cancel_request(client, id)
  if method_calls then
    return client:cancel_request(id)
  end
  return client.cancel_request(id)
end

-- The document version Neovim's client sent with its last didChange for `bufnr`.
function M.buf_version(bufnr)
  local versions = vim.lsp.util.buf_versions
  local version = versions and versions[bufnr]
  if version == nil then
    version = vim.api.nvim_buf_get_changedtick(bufnr)
  end
  return version
end

-- Byte column of `character` (in `encoding` units) in `line`, or nil when out of range.
function M.byte_col(line, character, encoding)
  if encoding == "utf-8" then
    return character <= #line and character or nil
  end
  local ok, col
  if method_calls then
    ok, col = pcall(vim.str_byteindex, line, encoding, character, false)
  else
    ok, col = pcall(vim.str_byteindex, line, character, encoding == "utf-16")
  end
  return ok and col or nil
end

-- Inline virtual text (text after it moves right) exists from 0.10; before that ghost text is
-- drawn over the line, with the rest of the line redrawn after it.
M.inline_virt_text = vim.fn.has("nvim-0.10") == 1

return M
