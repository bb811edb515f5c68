;;; harness.el --- shared by the Emacs drivers of tests/editors/test_emacs.py  -*- lexical-binding: t; -*-

;; A report (alist) written as JSON to $QCN_TEST_OUT on exit, every `message' recorded, and
;; waits that let process output (the server's answers) and timers run.

;;; Code:

(require 'json)

(defvar qt-report nil "The report, an alist; later entries win.")
(defvar qt-messages nil "Every message shown, newest first.")
(defvar qt-confirmations nil "Every y-or-n-p question, answered yes, newest first.")

(defun qt-put (key value)
  (setq qt-report (cons (cons key value) (assq-delete-all key qt-report))))

(advice-add 'message :around
            (lambda (show format-string &rest args)
              (when format-string
                (push (apply #'format-message format-string args) qt-messages))
              (apply show format-string args)))

;; Batch Emacs cannot ask: every confirmation is a yes, and recorded.
(fset 'y-or-n-p (lambda (prompt) (push prompt qt-confirmations) t))

(defun qt-finish (&optional error)
  (when error (qt-put 'error (format "%s" error)))
  (qt-put 'messages (vconcat (reverse qt-messages)))
  (qt-put 'confirmations (vconcat (reverse qt-confirmations)))
  (let ((coding-system-for-write 'utf-8))
    (with-temp-file (getenv "QCN_TEST_OUT")
      (insert (json-encode qt-report))))
  (kill-emacs 0))

(defun qt-wait (predicate timeout)
  "Wait up to TIMEOUT seconds for PREDICATE to return non-nil; return its value."
  (let ((deadline (+ (float-time) timeout))
        value)
    (while (and (not (setq value (funcall predicate))) (< (float-time) deadline))
      (accept-process-output nil 0.05))
    value))

(defun qt-messages-since (count)
  "Messages shown after the first COUNT ones, oldest first."
  (vconcat (reverse (butlast qt-messages count))))

(defun qt-run (body)
  "Run BODY (a function), then write the report; errors go into the report."
  (condition-case err
      (funcall body)
    (error (qt-finish (error-message-string err))))
  (qt-finish))

(provide 'harness)
;;; harness.el ends here
