-- Model load, indexing and edit progress (`$/progress`): `vim.notify` at begin and end, and a
-- statusline function that shows what is running (or the engine's state once loaded).
local M = {}

M.notify = true -- false: statusline only

local active = {} -- token -> { title, message, percentage }
local engine_state = nil -- "ready" or why not, from qcn.status once the model load ended

local function short(title)
  return (title or "qcn-lsp"):gsub("^qcn%-lsp: ", ""):gsub("^qcn: ", "")
end

local function redraw()
  vim.api.nvim_exec_autocmds("User", { pattern = "QcnStatus", modeline = false })
  pcall(vim.cmd, "redrawstatus")
end

local function ask_engine_state(client_id)
  local client = vim.lsp.get_client_by_id(client_id)
  if client == nil then
    return
  end
  local params = { command = "qcn.status", arguments = {} }
  require("qcn_lsp.compat").request(client, "workspace/executeCommand", params, function(err, result)
    if err or type(result) ~= "table" or type(result.engine) ~= "table" then
      return
    end
    engine_state = result.engine.state
    if engine_state == "ready" and M.notify then
      vim.notify("qcn-lsp: model ready", vim.log.levels.INFO)
    end
    redraw()
  end, nil)
end

function M.on_progress(result, client_id)
  local value = type(result) == "table" and result.value or nil
  if type(value) ~= "table" then
    return
  end
  local token = tostring(result.token)
  if value.kind == "begin" then
    active[token] = { title = value.title, message = value.message, percentage = value.percentage }
    if value.title and value.title:find("loading model") then
      engine_state = nil
    end
    if M.notify then
      vim.notify(value.title .. (value.message and (": " .. value.message) or ""), vim.log.levels.INFO)
    end
  elseif value.kind == "report" and active[token] then
    active[token].message = value.message or active[token].message
    active[token].percentage = value.percentage or active[token].percentage
  elseif value.kind == "end" then
    local finished = active[token]
    active[token] = nil
    if finished and finished.title and finished.title:find("loading model") then
      ask_engine_state(client_id)
    elseif finished and finished.title and finished.title:find("indexing") and M.notify then
      -- Edit commands report their own outcome; the index says nothing else when it is done.
      vim.notify(finished.title .. ": " .. (value.message or "done"), vim.log.levels.INFO)
    end
  end
  redraw()
end

-- For 'statusline': `%{v:lua.require'qcn_lsp'.statusline()}`.
function M.statusline()
  for _, item in pairs(active) do
    local text = "qcn: " .. short(item.title)
    if item.message then
      text = text .. " " .. item.message
    end
    if item.percentage then
      text = text .. string.format(" %d%%", item.percentage)
    end
    return text
  end
  if engine_state then
    return "qcn: " .. engine_state
  end
  return ""
end

return M
