;;; session.el --- eglot + editors/emacs/qcn-lsp.el against the real server  -*- lexical-binding: t; -*-

;; Driven by tests/editors/test_emacs.py in batch Emacs.  Connects as M-x eglot does after
;; `qcn-lsp-setup', asks for completions (cold, then at several spots), lists code actions,
;; applies them through eglot's own flow and through `qcn-lsp-code-actions', runs the edit
;; commands, and shuts the server down, timing what an eglot user waits for.
;;
;;   QCN_TEST_FILE      the project file to open
;;   QCN_TEST_PROGRAM   the server program
;;   QCN_TEST_MODEL     the model (empty: none)
;;   QCN_TEST_SETTINGS  further settings as JSON
;;   QCN_TEST_SPOTS     JSON list of [line, column] (1-based line, 0-based column)
;;   QCN_TEST_OUT       where the JSON report goes

;;; Code:

(require 'harness)
(require 'qcn-lsp)

(defun qt-goto (line column)
  (goto-char (point-min))
  (forward-line (1- line))
  (move-to-column column))

(defun qt-candidates ()
  "What completion-at-point offers here, or the error it ran into."
  (condition-case err
      (let* ((capf (eglot-completion-at-point))
             (probe (buffer-substring-no-properties (nth 0 capf) (nth 1 capf))))
        (vconcat (all-completions probe (nth 2 capf))))
    (error (format "error: %s" (error-message-string err)))))

(defun qt-timed-candidates (line column)
  (qt-goto line column)
  (let* ((started (float-time))
         (candidates (qt-candidates)))
    `((line . ,line) (column . ,column) (seconds . ,(- (float-time) started))
      (candidates . ,candidates))))

(defun qt-status (server)
  (jsonrpc-request server :workspace/executeCommand '(:command "qcn.status" :arguments [])))

(defun qt-titles (actions)
  (vconcat (mapcar (lambda (action) (plist-get action :title)) actions)))

(defvar qt-command-results nil "(COMMAND RESULT ERROR) of answered qcn-lsp commands.")
(add-hook 'qcn-lsp-command-functions
          (lambda (command result error) (push (list command result error) qt-command-results)))

(defun qt-command (name thunk)
  "Run THUNK (one of qcn-lsp's edit commands) and record what the user saw."
  (let ((before (length qt-messages))
        (text (buffer-string))
        (answered (length qt-command-results))
        (started (float-time)))
    (funcall thunk)
    (qt-wait (lambda () (> (length qt-command-results) answered)) 120)
    (let ((answer (car qt-command-results)))
      (qt-put name `((seconds . ,(- (float-time) started))
                     (answered . ,(> (length qt-command-results) answered))
                     (applied . ,(and (nth 1 answer)
                                      (eq (plist-get (nth 1 answer) :applied) t)))
                     (error . ,(nth 2 answer))
                     (changed . ,(not (equal text (buffer-string))))
                     (messages . ,(qt-messages-since before)))))))

(defun qt-from-server-p (message)
  "Whether MESSAGE is qcn-lsp's: its own, or a window/showMessage as eglot shows it."
  (string-match-p "\\`\\(\\[eglot\\] Server reports (type=[0-9]+): \\)?qcn-lsp" message))

(defvar qt-chosen nil "Titles chosen by `qt-choose-first'.")

(defun qt-choose-first (_prompt collection &rest _)
  "A `completing-read' that chooses the first candidate."
  (let ((first (car (all-completions "" collection))))
    (push first qt-chosen)
    first))

(qt-run
 (lambda ()
   (setq qcn-lsp-program (getenv "QCN_TEST_PROGRAM"))
   (let ((model (getenv "QCN_TEST_MODEL")))
     (setq qcn-lsp-model-path (and model (not (string-empty-p model)) model)))
   (setq qcn-lsp-settings (json-parse-string (getenv "QCN_TEST_SETTINGS") :object-type 'plist))
   (qcn-lsp-setup)
   (find-file (getenv "QCN_TEST_FILE"))
   (let ((started (float-time)))
     (call-interactively #'eglot)
     (qt-wait (lambda () (and (eglot-current-server)
                              (eglot--server-capable :completionProvider)))
              30)
     (qt-put 'connect_seconds (- (float-time) started)))
   (let* ((server (eglot-current-server))
          (spots (append (json-parse-string (getenv "QCN_TEST_SPOTS")) nil))
          (source (buffer-string)))
     (qt-put 'server_class (symbol-name (eieio-object-class server)))
     (qt-put 'resolve_provider
             (eq t (eglot--server-capable :codeActionProvider :resolveProvider)))
     ;; The first completions, while the model may still be loading: one as typing a
     ;; trigger character sends it, then one as completion-at-point asks (invoked).
     (let ((spot (car spots))
           (state (plist-get (plist-get (qt-status server) :engine) :state))
           (started (float-time)))
       (qt-goto (aref spot 0) (aref spot 1))
       (let ((answer (jsonrpc-request
                      server :textDocument/completion
                      `(,@(eglot--TextDocumentPositionParams)
                        :context (:triggerKind 2 :triggerCharacter " ")))))
         (qt-put 'cold_automatic `((engine_state . ,state)
                                   (seconds . ,(- (float-time) started))
                                   (items . ,(length (plist-get answer :items)))))))
     (let ((spot (car spots)))
       (qt-put 'cold_completion (qt-timed-candidates (aref spot 0) (aref spot 1))))
     (let ((started (float-time)))
       (qt-wait (lambda () (equal (plist-get (plist-get (qt-status server) :engine) :state)
                                  "ready"))
                90)
       (qt-put 'ready_after_seconds (- (float-time) started)))
     (qt-put 'completions
             (vconcat (mapcar (lambda (spot) (qt-timed-candidates (aref spot 0) (aref spot 1)))
                              spots)))

     ;; Two completions in flight for one document (a completion UI asking again after the
     ;; user moved on): what does the first one get?
     (let ((replies (list nil nil)))
       (dotimes (i 2)
         (let ((slot i)
               (spot (nth i spots)))
           (qt-goto (aref spot 0) (aref spot 1))
           (jsonrpc-async-request
            server :textDocument/completion
            `(,@(eglot--TextDocumentPositionParams) :context (:triggerKind 1))
            :success-fn (lambda (result)
                          (setf (nth slot replies)
                                `((items . ,(length (plist-get result :items))))))
            :error-fn (jsonrpc-lambda (&key code message &allow-other-keys)
                        (setf (nth slot replies) `((code . ,code) (message . ,message)))))))
       (qt-wait (lambda () (and (nth 0 replies) (nth 1 replies))) 30)
       (qt-put 'superseded (vconcat replies)))

     ;; Code actions: eglot's own listing (a selection: the rewrite) and one with a
     ;; diagnostic another server reported (the fix).
     (qt-goto 3 0)
     (let* ((beg (line-beginning-position))
            (end (line-end-position))
            (listed (eglot-code-actions beg end nil nil))
            (diagnostic '(:range (:start (:line 2 :character 11) :end (:line 2 :character 14))
                          :message "expected expression" :source "pyright"))
            (fixes (jsonrpc-request
                    server :textDocument/codeAction
                    `(:textDocument ,(eglot--TextDocumentIdentifier)
                      :range (:start (:line 2 :character 11) :end (:line 2 :character 14))
                      :context (:diagnostics [,diagnostic])))))
       (qt-put 'listed (qt-titles listed))
       (qt-put 'listed_fixes (qt-titles (append fixes nil)))
       (qt-put 'listed_have_edit_or_command
               (vconcat (mapcar (lambda (a) (or (plist-get a :edit) (plist-get a :command)))
                                listed)))

       ;; eglot's own code-action flow: choose the first action.
       (let ((before (length qt-messages))
             (runs-something (or (plist-get (car listed) :edit)
                                 (plist-get (car listed) :command))))
         (cl-letf (((symbol-function 'completing-read) #'qt-choose-first))
           (let ((last-nonmenu-event ?a)) ; not a mouse event: eglot asks with completing-read
             (eglot-code-actions beg end nil t)))
         ;; Data-only actions do nothing in eglot 1.9: wait only when something runs.
         (when runs-something
           (qt-wait (lambda () (or (not (equal source (buffer-string)))
                                   (cl-some #'qt-from-server-p
                                            (append (qt-messages-since before) nil))))
                    60))
         (qt-put 'eglot_action `((changed . ,(not (equal source (buffer-string))))
                                 (messages . ,(qt-messages-since before)))))

       ;; qcn-lsp-code-actions resolves data-only actions.
       (set-buffer-modified-p nil)
       (let ((before (length qt-messages))
             (started (float-time)))
         (cl-letf (((symbol-function 'completing-read) #'qt-choose-first))
           (qcn-lsp-code-actions beg end))
         (qt-wait (lambda () (or (not (equal source (buffer-string)))
                                 (cl-some (lambda (m) (and (qt-from-server-p m)
                                                           (not (string-match-p "asking" m))))
                                          (append (qt-messages-since before) nil))))
                  60)
         (qt-put 'qcn_action `((seconds . ,(- (float-time) started))
                               (changed . ,(not (equal source (buffer-string))))
                               (messages . ,(qt-messages-since before))))))

     ;; The edit commands: the edit lands through workspace/applyEdit, or a reason comes.
     (qt-goto 3 0)
     (qt-command 'rewrite (lambda () (qcn-lsp-rewrite (line-beginning-position)
                                                      (line-end-position)
                                                      "complete the expression")))
     (qt-goto 2 5)
     (qt-command 'refactor (lambda () (qcn-lsp-refactor "rename add to plus")))
     (qt-command 'edit_files (lambda () (qcn-lsp-edit-files "add a docstring")))
     (let ((before (length qt-messages)))
       (qcn-lsp-status)
       (qt-wait (lambda () (cl-some (lambda (m) (string-prefix-p "qcn-lsp: engine" m))
                                    (append (qt-messages-since before) nil)))
                10)
       (qt-put 'status_messages (qt-messages-since before)))

     ;; What eglot logged about superseded requests, then a timed shutdown.
     (with-current-buffer (jsonrpc-events-buffer server)
       (qt-put 'cancelled_replies (how-many "-32800" (point-min) (point-max))))
     (let ((started (float-time)))
       (condition-case err
           (eglot-shutdown server)
         (error (qt-put 'shutdown_error (error-message-string err))))
       (qt-put 'shutdown_seconds (- (float-time) started))
       (qt-put 'server_alive_after_shutdown
               (process-live-p (jsonrpc--process server)))))))
;;; session.el ends here
