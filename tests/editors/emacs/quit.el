;;; quit.el --- eglot shuts qcn-lsp down while it prefills  -*- lexical-binding: t; -*-

;; Driven by tests/editors/test_emacs.py and bench/shutdown.py.  Connects, waits for the model,
;; asks for a completion at QCN_TEST_LINE and, QCN_TEST_DELAY_MS later (the prefill running),
;; times `eglot-shutdown' (eglot waits 1.5 s for the reply, sends `exit' and kills the
;; process at once) and records what the completion got.
;;
;;   QCN_TEST_FILE      the project file to open
;;   QCN_TEST_PROGRAM   the server program
;;   QCN_TEST_MODEL     the model
;;   QCN_TEST_SETTINGS  further settings as JSON
;;   QCN_TEST_LINE      0-based line of the completion
;;   QCN_TEST_DELAY_MS  time between the request and the shutdown
;;   QCN_TEST_OUT       where the JSON report goes

;;; Code:

(require 'harness)
(require 'qcn-lsp)

(qt-run
 (lambda ()
   (setq qcn-lsp-program (getenv "QCN_TEST_PROGRAM"))
   (setq qcn-lsp-model-path (getenv "QCN_TEST_MODEL"))
   (setq qcn-lsp-settings (json-parse-string (getenv "QCN_TEST_SETTINGS") :object-type 'plist))
   (qcn-lsp-setup)
   (find-file (getenv "QCN_TEST_FILE"))
   (call-interactively #'eglot)
   (qt-wait (lambda () (and (eglot-current-server)
                            (eglot--server-capable :completionProvider)))
            30)
   (let ((server (eglot-current-server))
         (reply nil))
     (qt-put 'server_pid (process-id (jsonrpc--process server)))
     (qt-wait (lambda ()
                (equal (plist-get (plist-get (jsonrpc-request
                                              server :workspace/executeCommand
                                              '(:command "qcn.status" :arguments []))
                                             :engine)
                                  :state)
                       "ready"))
              90)
     (jsonrpc-async-request
      server :textDocument/inlineCompletion
      `(:textDocument ,(eglot--TextDocumentIdentifier)
        :position (:line ,(string-to-number (getenv "QCN_TEST_LINE")) :character 0)
        :context (:triggerKind 1))
      :success-fn (lambda (_result) (setq reply "result"))
      :error-fn (jsonrpc-lambda (&key message &allow-other-keys) (setq reply message)))
     (accept-process-output nil (/ (string-to-number (getenv "QCN_TEST_DELAY_MS")) 1000.0))
     (let ((started (float-time)))
       (condition-case err
           (eglot-shutdown server)
         (error (qt-put 'shutdown_error (error-message-string err))))
       (qt-put 'shutdown_seconds (- (float-time) started)))
     (qt-put 'completion (or reply :null))
     (qt-put 'server_alive_after_shutdown (process-live-p (jsonrpc--process server))))))
;;; quit.el ends here
