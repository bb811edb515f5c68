;;; apply_edit.el --- eglot applies a WorkspaceEdit built by qcn_lsp.edits  -*- lexical-binding: t; -*-

;; Driven by tests/editors/test_emacs.py: the edit in $QCN_TEST_EDIT (JSON) goes through
;; eglot's own `workspace/applyEdit' code; the files in $QCN_TEST_FILES are reported.

;;; Code:

(require 'harness)
(require 'eglot)

(qt-run
 (lambda ()
   (let ((files (append (json-parse-string (getenv "QCN_TEST_FILES")) nil))
         (edit (json-parse-string (getenv "QCN_TEST_EDIT") :object-type 'plist
                                  :null-object nil :false-object :json-false)))
     ;; The first file is open, as when the server built the edit.
     (find-file (car files))
     (eglot--apply-workspace-edit edit eglot-confirm-server-initiated-edits)
     (qt-put 'files (mapcar (lambda (path)
                              (with-current-buffer (find-file-noselect path)
                                (cons path (buffer-string))))
                            files)))))
;;; apply_edit.el ends here
