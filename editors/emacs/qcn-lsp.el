;;; qcn-lsp.el --- Qwen3-Coder-Next completions and edits through eglot  -*- lexical-binding: t; -*-

;; Version: 0.1
;; Package-Requires: ((emacs "28.1") (eglot "1.9"))
;; Keywords: languages, tools

;;; Commentary:

;; qcn-lsp as eglot's language server for the major modes in `qcn-lsp-major-modes':
;;
;;   (add-to-list 'load-path "/path/to/qcn-lsp/editors/emacs")
;;   (require 'qcn-lsp)
;;   (setq qcn-lsp-model-path "/models/Qwen3-Coder-Next-Q4_K_M.gguf")
;;   (qcn-lsp-setup)
;;
;; then M-x eglot (or `eglot-ensure' in a mode hook).  Completions come through
;; `completion-at-point' (the model's continuation as one candidate), code actions through
;; `qcn-lsp-code-actions' (or eglot's own `eglot-code-actions'), edits through
;; `qcn-lsp-refactor', `qcn-lsp-edit-files' and `qcn-lsp-rewrite'; `qcn-lsp-status' says what
;; the engine and the index are doing.  eglot runs one server per buffer: for these modes
;; qcn-lsp replaces the server you would otherwise use.  See editors/README.md.

;;; Code:

(require 'cl-lib)
(require 'eglot)
(require 'jsonrpc)
(require 'project)
(require 'subr-x)

(defgroup qcn-lsp nil
  "Qwen3-Coder-Next language server through eglot."
  :group 'eglot
  :prefix "qcn-lsp-")

(defcustom qcn-lsp-program nil
  "The qcn-lsp command.
nil: `qcn-lsp' on PATH, else .venv/bin/qcn-lsp of the checkout holding this
file."
  :type '(choice (const :tag "Find it" nil) (file :tag "Program")))

(defcustom qcn-lsp-program-args '("--log-level" "WARNING")
  "Arguments of the qcn-lsp command (it serves LSP on stdio)."
  :type '(repeat string))

(defcustom qcn-lsp-model-path nil
  "GGUF model file (the setting model.path).
nil leaves it to the server, which then reads $QCN_MODEL."
  :type '(choice (const :tag "Server default" nil) file))

(defcustom qcn-lsp-settings nil
  "Further `qcn' settings (docs/configuration.md) as a plist.
For example (:completion (:maxTokens 64) :context (:budgetTokens 8192)).
Sent as initializationOptions; per project, put (:qcn SETTINGS) in
`eglot-workspace-configuration'."
  :type 'sexp)

(defcustom qcn-lsp-major-modes
  '(python-mode python-ts-mode js-mode js-ts-mode typescript-mode typescript-ts-mode
    tsx-ts-mode go-mode go-ts-mode rust-mode rust-ts-mode java-mode java-ts-mode
    c-mode c-ts-mode c++-mode c++-ts-mode)
  "Major modes whose buffers qcn-lsp serves once `qcn-lsp-setup' ran."
  :type '(repeat symbol))

(defcustom qcn-lsp-request-timeout 300
  "Seconds to wait for a model-driven command or code action.
eglot's own requests give up after 10 s, which a large model can need for
one edit."
  :type 'integer)

(defconst qcn-lsp--checkout
  (expand-file-name "../.." (file-name-directory (or load-file-name buffer-file-name)))
  "The qcn-lsp checkout holding this file.")

(defclass qcn-lsp-server (eglot-lsp-server) ()
  :documentation "qcn-lsp, as eglot talks to it.")

;;; Starting

(defun qcn-lsp--program ()
  "The server program to run, or nil."
  (let ((candidates (if qcn-lsp-program
                        (list qcn-lsp-program)
                      (list "qcn-lsp" (expand-file-name ".venv/bin/qcn-lsp" qcn-lsp--checkout)))))
    (cl-loop for candidate in candidates
             for found = (if (file-name-absolute-p candidate)
                             (and (file-executable-p candidate) candidate)
                           (executable-find candidate))
             when found return found)))

(defun qcn-lsp--contact (&optional _interactive)
  "The eglot contact for qcn-lsp.
A `user-error' says what to install when the program is missing."
  (let ((program (qcn-lsp--program)))
    (unless program
      (user-error
       (concat "qcn-lsp: cannot start the language server: `%s' is not on PATH or not "
               "executable.  Install it with `pipx install /path/to/qcn-lsp' (or `make "
               "install' in the checkout), or set `qcn-lsp-program'")
       (or qcn-lsp-program "qcn-lsp")))
    `(qcn-lsp-server . (,program ,@qcn-lsp-program-args))))

(defun qcn-lsp--settings ()
  "The initializationOptions: `qcn-lsp-settings' with `qcn-lsp-model-path'."
  (let ((settings (copy-tree qcn-lsp-settings)))
    (when qcn-lsp-model-path
      (setq settings
            (plist-put settings :model
                       (plist-put (copy-tree (plist-get settings :model))
                                  :path (expand-file-name qcn-lsp-model-path)))))
    (or settings (make-hash-table))))

(cl-defmethod eglot-initialization-options ((_server qcn-lsp-server))
  (qcn-lsp--settings))

(cl-defmethod eglot-client-capabilities ((_server qcn-lsp-server))
  ;; Model load, indexing and edit progress come as $/progress only to clients that say so.
  (let ((capabilities (cl-call-next-method)))
    (plist-put capabilities :window
               (plist-put (copy-tree (plist-get capabilities :window)) :workDoneProgress t))))

;;;###autoload
(defun qcn-lsp-setup ()
  "Make qcn-lsp eglot's server for `qcn-lsp-major-modes'.
Its progress shows in the mode line."
  (add-to-list 'eglot-server-programs (cons qcn-lsp-major-modes #'qcn-lsp--contact))
  (add-to-list 'mode-line-misc-info '(:eval (qcn-lsp-mode-line))))

(defun qcn-lsp--server ()
  "The qcn-lsp server of the current buffer.
Otherwise a `user-error' says how to start it."
  (let ((server (eglot-current-server)))
    (unless (cl-typep server 'qcn-lsp-server)
      (user-error "qcn-lsp is not managing this buffer: run M-x qcn-lsp-setup, then M-x eglot"))
    server))

;;; Progress

(defvar qcn-lsp--progress nil
  "Running work, as an alist (TOKEN . (TITLE MESSAGE PERCENTAGE)).")

(cl-defmethod eglot-handle-request
  ((_server qcn-lsp-server) (_method (eql window/workDoneProgress/create)) &key _token)
  "Accept the server's progress token." nil)

(cl-defmethod eglot-handle-notification
  ((_server qcn-lsp-server) (_method (eql $/progress)) &key token value)
  "Show model load, indexing and edit progress."
  (let ((kind (plist-get value :kind))
        (title (plist-get value :title)))
    (pcase kind
      ("begin"
       (push (cons token (list title (plist-get value :message) (plist-get value :percentage)))
             qcn-lsp--progress)
       (message "%s" title))
      ("report"
       (when-let ((entry (assoc token qcn-lsp--progress)))
         (setcdr entry (list (nth 1 entry) (plist-get value :message)
                             (plist-get value :percentage)))))
      ("end"
       (when-let ((entry (assoc token qcn-lsp--progress)))
         (setq qcn-lsp--progress (delq entry qcn-lsp--progress))
         (message "%s: done" (nth 1 entry)))))
    (force-mode-line-update t)))

(defun qcn-lsp-mode-line ()
  "What qcn-lsp is busy with, for the mode line (empty when idle)."
  (if-let ((entry (car qcn-lsp--progress)))
      (cl-destructuring-bind (title message percentage) (cdr entry)
        (concat " [" (string-remove-prefix "qcn-lsp: " (or title "qcn"))
                (if message (concat " " message) "")
                (if percentage (format " %d%%" percentage) "")
                "]"))
    ""))

;;; Commands

(defvar qcn-lsp-command-functions nil
  "Functions called with (COMMAND RESULT ERROR) when a command answered.")

(defun qcn-lsp--json-true-p (value)
  (and value (not (eq value :json-false))))

(defun qcn-lsp--say-outcome (what result)
  "Tell the user what became of edit command WHAT.
RESULT is the command's answer: applied, cancelled, files, reason."
  (let ((reason (plist-get result :reason))
        (files (mapconcat #'identity (append (plist-get result :files) nil) ", ")))
    (cond ((qcn-lsp--json-true-p (plist-get result :cancelled))
           (message "qcn-lsp: %s cancelled" what))
          ((qcn-lsp--json-true-p (plist-get result :applied))
           (message "qcn-lsp: %s applied to %s%s" what files
                    (if (stringp reason) (concat "; " reason) "")))
          (t (message "qcn-lsp: %s: nothing applied: %s" what
                      (if (stringp reason) reason "no reason given"))))))

(defun qcn-lsp--execute (server command arguments &optional on-result)
  "Run COMMAND with ARGUMENTS (a vector) on SERVER without blocking Emacs.
ON-RESULT, if given, is called with the result (or nil) and the error
message (or nil)."
  (let ((done (lambda (result error)
                (run-hook-with-args 'qcn-lsp-command-functions command result error)
                (when on-result (funcall on-result result error)))))
    (jsonrpc-async-request
     server :workspace/executeCommand
     `(:command ,command :arguments ,(or arguments []))
     :timeout qcn-lsp-request-timeout
     :success-fn (lambda (result) (funcall done result nil))
     :error-fn (jsonrpc-lambda (&key message &allow-other-keys)
                 (message "%s" message)
                 (funcall done nil message))
     :timeout-fn (lambda ()
                   (let ((text (format "qcn-lsp: %s got no answer in %s s"
                                       command qcn-lsp-request-timeout)))
                     (message "%s" text)
                     (funcall done nil text))))))

(defun qcn-lsp--edit-command (what command argument)
  (qcn-lsp--execute (qcn-lsp--server) command (vector argument)
                    (lambda (result _error)
                      (when result (qcn-lsp--say-outcome what result)))))

(cl-defmethod eglot-execute-command ((server qcn-lsp-server) command arguments)
  "Run COMMAND with ARGUMENTS on SERVER without eglot's 10 s limit.
Code actions' commands come here too; the outcome is shown when it comes."
  (let ((name (format "%s" command)))
    (qcn-lsp--execute server name arguments
                      (lambda (result _error)
                        (when (and result (not (equal name "qcn.status")))
                          (qcn-lsp--say-outcome name result))))))

(defun qcn-lsp--uri ()
  (plist-get (eglot--TextDocumentIdentifier) :uri))

(defun qcn-lsp--read-instruction (prompt)
  (let ((instruction (string-trim (read-string prompt))))
    (when (string-empty-p instruction)
      (user-error "qcn-lsp: say what to do"))
    instruction))

;;;###autoload
(defun qcn-lsp-refactor (instruction)
  "Apply INSTRUCTION to the symbol at point, in every file using it."
  (interactive
   (list (qcn-lsp--read-instruction
          (format "Refactor `%s': " (or (thing-at-point 'symbol t) "symbol at point")))))
  (qcn-lsp--edit-command "refactor" "qcn.refactor"
                         (list :instruction instruction :uri (qcn-lsp--uri)
                               :position (eglot--pos-to-lsp-position (point)))))

;;;###autoload
(defun qcn-lsp-edit-files (instruction &optional files)
  "Apply INSTRUCTION to FILES.
Interactively: this file; with a prefix argument, files you choose."
  (interactive
   (list (qcn-lsp--read-instruction "Edit files: ")
         (when current-prefix-arg
           (completing-read-multiple "Files: " (project-files (project-current t))))))
  (let ((paths (or files (list (buffer-file-name)))))
    (qcn-lsp--edit-command "edit files" "qcn.editFiles"
                           (list :instruction instruction
                                 :uris (vconcat (mapcar (lambda (path)
                                                          (eglot--path-to-uri
                                                           (expand-file-name path)))
                                                        paths))))))

;;;###autoload
(defun qcn-lsp-rewrite (beg end instruction)
  "Rewrite the lines from BEG to END following INSTRUCTION."
  (interactive
   (if (use-region-p)
       (list (region-beginning) (region-end) (qcn-lsp--read-instruction "Rewrite as: "))
     (list (line-beginning-position) (line-end-position)
           (qcn-lsp--read-instruction "Rewrite line as: "))))
  (qcn-lsp--edit-command "rewrite" "qcn.rewrite"
                         (list :instruction instruction :uri (qcn-lsp--uri)
                               :range (list :start (eglot--pos-to-lsp-position beg)
                                            :end (eglot--pos-to-lsp-position end)))))

(defun qcn-lsp--status-summary (status)
  (let ((engine (plist-get status :engine))
        (index (plist-get status :index))
        (last (plist-get status :lastRequest)))
    (concat
     (format "qcn-lsp: engine %s" (plist-get engine :state))
     (if (plist-get engine :model)
         (format " (%s, context %s)" (plist-get engine :model) (plist-get engine :nCtx))
       "")
     (format "; index %s" (plist-get index :state))
     (if last
         (format "; last completion %s ms, %s of %s prompt tokens reused"
                 (plist-get (plist-get last :ms) :total)
                 (plist-get last :reusedTokens) (plist-get last :promptTokens))
       ""))))

;;;###autoload
(defun qcn-lsp-status (&optional full)
  "Show the engine, index and last request.
With FULL (a prefix argument), all of the status in a buffer."
  (interactive "P")
  (qcn-lsp--execute
   (qcn-lsp--server) "qcn.status" []
   (lambda (status _error)
     (when status
       (if full
           (with-current-buffer (get-buffer-create "*qcn-lsp status*")
             (let ((inhibit-read-only t))
               (erase-buffer)
               (pp status (current-buffer)))
             (display-buffer (current-buffer)))
         (message "%s" (qcn-lsp--status-summary status)))))))

;;; Code actions

(defun qcn-lsp--apply-action-edit (edit)
  ;; eglot 1.9's second argument asks for confirmation; the user chose this action already.
  (eglot--apply-workspace-edit edit nil))

(defun qcn-lsp--run-action (server action)
  "Apply code ACTION of SERVER.
Its edit, its command, or (when it carries only data) its resolved edit."
  (let ((edit (plist-get action :edit))
        (command (plist-get action :command)))
    (cond
     (edit (qcn-lsp--apply-action-edit edit))
     (command (eglot-execute-command server (plist-get command :command)
                                     (plist-get command :arguments)))
     (t
      (message "qcn-lsp: asking the model: %s" (plist-get action :title))
      (jsonrpc-async-request
       server :codeAction/resolve action
       :timeout qcn-lsp-request-timeout
       :success-fn (lambda (resolved)
                     (let ((disabled (plist-get resolved :disabled)))
                       (cond (disabled
                              (message "qcn-lsp: %s" (plist-get disabled :reason)))
                             ((plist-get resolved :edit)
                              (qcn-lsp--apply-action-edit (plist-get resolved :edit)))
                             (t (message "qcn-lsp: the model proposed no edit")))))
       :error-fn (jsonrpc-lambda (&key message &allow-other-keys)
                   (message "%s" message))
       :timeout-fn (lambda ()
                     (message "qcn-lsp: no answer in %s s" qcn-lsp-request-timeout)))))))

;;;###autoload
(defun qcn-lsp-code-actions (beg end)
  "Choose one of qcn-lsp's code actions for BEG..END and apply it.
Unlike `eglot-code-actions' (eglot 1.9), this resolves actions that carry
only data: the model runs once you chose."
  (interactive (if (use-region-p)
                   (list (region-beginning) (region-end))
                 (list (point) (point))))
  (let* ((server (qcn-lsp--server))
         (actions (eglot-code-actions beg end nil nil))
         (titles (mapcar (lambda (action) (cons (plist-get action :title) action)) actions)))
    (unless titles
      (user-error "qcn-lsp: no code actions here (select code to rewrite it)"))
    (let ((title (completing-read "qcn-lsp action: " titles nil t nil nil (caar titles))))
      (qcn-lsp--run-action server (cdr (assoc title titles))))))

(provide 'qcn-lsp)
;;; qcn-lsp.el ends here
