-- qcn-lsp for Neovim's built-in LSP client (0.7 and later).
--
--   require("qcn_lsp").setup({ model = "/path/to/model.gguf" })
--
-- starts one qcn-lsp per project root for the listed filetypes, shows its completions as ghost
-- text while you type (streamed as the model writes), and adds :QcnRefactor, :QcnEditFiles,
-- :QcnRewrite and :QcnStatus. See editors/neovim/README.md.
local client = require("qcn_lsp.client")
local commands = require("qcn_lsp.commands")
local ghost = require("qcn_lsp.ghost")
local progress = require("qcn_lsp.progress")
local suggest = require("qcn_lsp.suggest")

local M = {}

local defaults = {
  cmd = nil, -- default: `qcn-lsp` on PATH, else .venv/bin/qcn-lsp of this plugin's checkout
  filetypes = {
    "python",
    "javascript",
    "javascriptreact",
    "typescript",
    "typescriptreact",
    "go",
    "rust",
    "java",
    "c",
    "cpp",
  },
  root_markers = { ".git", "pyproject.toml", "package.json", "Cargo.toml", "go.mod" },
  model = nil, -- path of a GGUF model; also QCN_MODEL in the server's environment
  settings = {}, -- the `qcn` settings (docs/configuration.md)
  capabilities = nil, -- merged into the client capabilities (e.g. from cmp-nvim-lsp)
  ghost_text = true, -- completions as ghost text while typing in insert mode
  debounce_ms = 50, -- quiet time after a keystroke before asking (the server debounces too)
  hl_group = "Comment",
  keymaps = {
    accept = "<Tab>", -- without ghost text the key does what it did before
    accept_word = "<M-Right>",
    accept_line = false,
    dismiss = "<C-]>",
    trigger = "<M-\\>", -- ask now (shows why when there is no completion)
  },
  notify_progress = true, -- model load / indexing via vim.notify (else statusline() only)
  confirm_edits = true, -- ask before an edit command's changes are applied
}

-- Lists replace the defaults instead of merging with them index by index.
local LIST_OPTIONS = { "cmd", "filetypes", "root_markers" }

local function merged(user)
  local options = vim.tbl_deep_extend("force", defaults, user or {})
  for _, key in ipairs(LIST_OPTIONS) do
    if user and user[key] ~= nil then
      options[key] = user[key]
    end
  end
  return options
end

M.options = merged(nil)

-- Start (or reuse) the project's server and attach it to `bufnr`; nil if it cannot run.
function M.attach(bufnr, opts)
  opts = opts or M.options
  local id = client.attach(bufnr, opts)
  if id == nil then
    return nil
  end
  vim.bo[bufnr].omnifunc = "v:lua.vim.lsp.omnifunc"
  if opts.ghost_text then
    suggest.attach(bufnr, opts.keymaps)
  end
  return id
end

local function define_commands()
  local function command(name, fn, opts)
    vim.api.nvim_create_user_command(name, fn, opts)
  end
  command("QcnRefactor", function(args)
    commands.refactor(args.args)
  end, { nargs = "+", desc = "qcn-lsp: apply an instruction to the symbol at the cursor everywhere" })
  command("QcnEditFiles", function(args)
    commands.edit_files(args.args, args.bang and commands.listed_files() or nil)
  end, {
    nargs = "+",
    bang = true,
    desc = "qcn-lsp: apply an instruction to this file (with !: to all listed buffers)",
  })
  command("QcnRewrite", function(args)
    commands.rewrite(args.args, args.line1, args.line2)
  end, { nargs = "+", range = true, desc = "qcn-lsp: rewrite the selected lines" })
  command("QcnStatus", function(args)
    commands.status(args.bang)
  end, { bang = true, desc = "qcn-lsp: engine, index and last request (with !: all of it)" })
end

function M.setup(user_opts)
  M.options = merged(user_opts)
  suggest.debounce_ms = M.options.debounce_ms
  ghost.hl_group = M.options.hl_group
  progress.notify = M.options.notify_progress
  local group = vim.api.nvim_create_augroup("qcn_lsp", { clear = true })
  vim.api.nvim_create_autocmd("FileType", {
    group = group,
    pattern = M.options.filetypes,
    callback = function(args)
      M.attach(args.buf)
    end,
  })
  define_commands()
  -- Buffers opened before setup ran.
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if
      vim.api.nvim_buf_is_loaded(bufnr)
      and vim.tbl_contains(M.options.filetypes, vim.bo[bufnr].filetype)
    then
      M.attach(bufnr)
    end
  end
end

-- For mappings of your own (e.g. inside an nvim-cmp <Tab> mapping).
M.accept = suggest.accept -- accept("all" | "word" | "line") -> false without ghost text
M.dismiss = suggest.dismiss
function M.trigger()
  return suggest.request(vim.api.nvim_get_current_buf(), true)
end
function M.ghost_text(bufnr)
  return ghost.get(bufnr or vim.api.nvim_get_current_buf())
end
M.statusline = progress.statusline
M.refactor = commands.refactor
M.edit_files = commands.edit_files
M.rewrite = commands.rewrite
M.status = commands.status

return M
