;;; missing_server.el --- qcn-lsp.el with a server program that does not exist  -*- lexical-binding: t; -*-

;; Driven by tests/editors/test_emacs.py: M-x eglot in a Python buffer after `qcn-lsp-setup',
;; with `qcn-lsp-program' naming a missing file; records what the user is told.

;;; Code:

(require 'harness)
(require 'qcn-lsp)

(qt-run
 (lambda ()
   (setq qcn-lsp-program (getenv "QCN_TEST_PROGRAM"))
   (qcn-lsp-setup)
   (find-file (getenv "QCN_TEST_FILE"))
   (condition-case err
       (call-interactively #'eglot)
     (user-error (qt-put 'user_error (error-message-string err))))
   (condition-case err
       (qcn-lsp-status)
     (user-error (qt-put 'status_error (error-message-string err))))
   (qt-put 'managed (and (eglot-current-server) t))))
;;; missing_server.el ends here
