-- Shared by the Neovim drivers of tests/editors/test_neovim.py: a report written as JSON to
-- $QCN_TEST_OUT on exit, captured notifications, and a coroutine runner whose waits let
-- Neovim's main loop run (typed keys, autocommands, LSP messages) in between.
local M = { report = { notifications = {} } }

local finished = false
local runner

function M.finish(err)
  if finished then
    return
  end
  finished = true
  if err then
    M.report.error = tostring(err)
  end
  vim.fn.writefile({ vim.json.encode(M.report) }, vim.env.QCN_TEST_OUT)
  vim.cmd("qall!")
end

local function resume()
  local ok, err = coroutine.resume(runner)
  if not ok then
    M.finish(debug.traceback(runner, err))
  elseif coroutine.status(runner) == "dead" then
    M.finish()
  end
end

-- Run `body` as a coroutine; the report is written when it returns or fails.
function M.run(body)
  vim.notify = function(message, level)
    table.insert(M.report.notifications, { message = message, level = level or vim.log.levels.INFO })
  end
  runner = coroutine.create(body)
  vim.schedule(resume)
end

function M.sleep(ms)
  vim.defer_fn(resume, ms)
  coroutine.yield()
end

function M.wait_for(condition, timeout_ms, step_ms)
  local deadline = vim.loop.now() + timeout_ms
  while true do
    local value = condition()
    if value then
      return value
    end
    if vim.loop.now() > deadline then
      return nil
    end
    M.sleep(step_ms or 20)
  end
end

-- Keys as if typed (mappings apply), processed once the runner waits.
function M.type(keys)
  vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes(keys, true, false, true), "t", false)
end

-- The plugin's initialized client for the current buffer.
function M.client(timeout_ms)
  local bufnr = vim.api.nvim_get_current_buf()
  local client = M.wait_for(function()
    return require("qcn_lsp.client").for_buffer(bufnr)
  end, timeout_ms or 30000, 50)
  if client == nil then
    error("qcn-lsp did not start for " .. vim.api.nvim_buf_get_name(bufnr))
  end
  return client
end

-- The server's qcn.status result once `accept(status)` holds.
function M.status_until(accept, timeout_ms)
  local last
  local ok = M.wait_for(function()
    local done = false
    local client = M.client()
    local params = { command = "qcn.status", arguments = {} }
    require("qcn_lsp.compat").request(client, "workspace/executeCommand", params, function(_, result)
      last = result
      done = true
    end, vim.api.nvim_get_current_buf())
    M.wait_for(function()
      return done
    end, 5000, 20)
    return type(last) == "table" and accept(last)
  end, timeout_ms, 200)
  if not ok then
    error("server status never matched: " .. vim.inspect(last))
  end
  return last
end

return M
