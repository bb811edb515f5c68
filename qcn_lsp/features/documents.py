"""Editor and file-system events → the workspace index.

pygls keeps `ls.workspace` in sync itself (its didOpen/didChange/didClose handlers apply each
change before calling the ones here), so these only forward the result to the `RepoIndex`, on
one worker thread, in arrival order. Changes go as whole texts, the client's ranges unused: the
index diffs each text against its own copy into one minimal edit, which re-tags only the
statements around it (a list of edits would re-tag the whole file).

Events that arrive while the index is being (re)built are not lost: open documents are read
from `ls.workspace` and paths changed on disk are remembered, and both are replayed once the
index is ready (`RepoIndex.build` reads the disk, so only what changed meanwhile is missing).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.uris import to_fs_path

if TYPE_CHECKING:
    from context.index import RepoIndex
    from qcn_lsp.server import QcnServer
    from qcn_lsp.services import Services

logger = logging.getLogger(__name__)

WATCHER_REGISTRATION_ID = "qcn-lsp/watched-files"
# Pause in a document's updates after which a parse that met syntax errors is redone afresh.
VERIFY_AFTER_S = 0.3
ALL_FILES = types.FileOperationRegistrationOptions(
    filters=[
        types.FileOperationFilter(pattern=types.FileOperationPattern(glob="**/*"), scheme="file")
    ]
)


class DocumentIndexer:
    """Forwards document and file events to the current RepoIndex, in order, off the loop."""

    def __init__(self, server: QcnServer, services: Services) -> None:
        self.server = server
        self.services = services
        # One worker: index updates apply in arrival order, per document and overall.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qcn-index")
        self._lock = threading.Lock()
        # Newest text of a document not yet given to the index. While an update is queued,
        # later keystrokes only replace its text: fast typing costs one parse, not one each.
        self._pending: dict[str, str] = {}
        # Paths changed on disk while no index was ready (event loop only).
        self._touched: set[str] = set()
        # Whether an open document's path is indexable (worker thread only).
        self._accepted: dict[str, bool] = {}
        # Jobs submitted and not finished: qcn.status shows it (is the index caught up?).
        self._backlog = 0
        self._verify_timers: dict[str, threading.Timer] = {}
        services.on_index_ready(self._index_ready)
        services.index_backlog = self.backlog

    def backlog(self) -> int:
        with self._lock:
            return self._backlog

    # -- event loop side ----------------------------------------------------------------------

    def text_changed(self, uri: str) -> None:
        """didOpen / didChange: queue the document's current text for the index."""
        path = to_fs_path(uri)
        if path is None or self.services.index_if_ready() is None:
            return  # without an index, the ready-time replay reads ls.workspace
        text = self.server.workspace.get_text_document(uri).source
        with self._lock:
            queued = path in self._pending
            self._pending[path] = text
        if not queued:
            self._submit(self._apply_pending, path)

    def saved(self, uri: str) -> None:
        path = to_fs_path(uri)
        if path is None or self.services.index_if_ready() is None:
            return
        self._submit(self._save, path, self._take_pending(path))

    def closed(self, uri: str) -> None:
        path = to_fs_path(uri)
        if path is None or self.services.index_if_ready() is None:
            return
        self._take_pending(path)  # the disk is authoritative again
        self._submit(self._close, path)

    def disk_changed(self, uri: str, *, deleted: bool) -> None:
        """A file or folder was created, changed or deleted outside the buffers."""
        path = to_fs_path(uri)  # None for untitled:, git: and other non-file URIs
        if path is None:
            return
        if self.services.index_if_ready() is None:
            self._touched.add(path)
            return
        # Ops take the path's pending text along, so that a later keystroke queues anew and
        # cannot overtake them.
        self._submit(self._disk_changed, path, self._take_pending(path), deleted)

    def renamed(self, old_uri: str, new_uri: str) -> None:
        old, new = to_fs_path(old_uri), to_fs_path(new_uri)
        if old is None or new is None:
            # Moved between a file: URI and another scheme: a deletion or a creation.
            if old is not None:
                self.disk_changed(old_uri, deleted=True)
            if new is not None:
                self.disk_changed(new_uri, deleted=False)
            return
        if self.services.index_if_ready() is None:
            self._touched.update((old, new))
            return
        self._submit(self._rename, old, new, self._take_pending(old))

    def _index_ready(self, index: RepoIndex) -> None:
        """A (re)built index became current: replay what it cannot know from the disk."""
        documents = {
            path: document.source
            for uri, document in self.server.workspace.text_documents.items()
            if (path := to_fs_path(uri)) is not None
        }
        touched, self._touched = self._touched, set()
        self._submit(self._replay, index, documents, touched)

    def _take_pending(self, path: str) -> str | None:
        with self._lock:
            return self._pending.pop(path, None)

    def _submit(self, job: Callable[..., None], *args: Any) -> None:
        with self._lock:
            self._backlog += 1
        self._executor.submit(self._guarded, job, *args)

    def _guarded(self, job: Callable[..., None], *args: Any) -> None:
        # A failed update must not stop the worker or reach the editor as an error: the index
        # is an aid to completions, which work without it.
        try:
            job(*args)
        except Exception:
            logger.exception("index update failed: %s%s", job.__name__, args[:1])
        finally:
            with self._lock:
                self._backlog -= 1

    # -- worker thread ------------------------------------------------------------------------

    def _indexable(self, index: RepoIndex, path: str) -> bool:
        """Inside a workspace folder and not excluded by the scan rules (ignore, secrets)."""
        accepted = self._accepted.get(path)
        if accepted is None:
            scanner = index.scanner
            key = scanner.key_for(path)
            if key is None:
                accepted = False
            elif os.path.isfile(path):
                accepted = scanner.accepts(Path(path))
            else:  # a buffer not saved yet: judged by its name
                accepted = not scanner.is_excluded_name(key)
            self._accepted[path] = accepted
        return accepted

    def _update(self, index: RepoIndex, path: str, text: str | None) -> None:
        if text is not None and self._indexable(index, path):
            index.update_document(path, text)

    def _apply_pending(self, path: str) -> None:
        text = self._take_pending(path)
        index = self.services.index_if_ready()
        if index is not None:
            self._update(index, path, text)
            if index.needs_verify(path):
                self._verify_later(path)

    def _verify_later(self, path: str) -> None:
        """A parse met syntax errors: parse afresh once the typing pauses (RepoIndex.
        verify_document), not on every keystroke."""
        timer = threading.Timer(VERIFY_AFTER_S, lambda: self._submit(self._verify, path, timer))
        timer.daemon = True
        with self._lock:
            previous = self._verify_timers.pop(path, None)
            self._verify_timers[path] = timer
            if previous is None:
                self._backlog += 1  # a scheduled verification is work not done yet
        if previous is not None:
            previous.cancel()
        timer.start()

    def _verify(self, path: str, timer: threading.Timer) -> None:
        with self._lock:
            if self._verify_timers.get(path) is not timer:
                return  # superseded by a later keystroke's verification
            del self._verify_timers[path]
            self._backlog -= 1
            if path in self._pending:
                return  # newer text is queued: its update schedules the next verification
        index = self.services.index_if_ready()
        if index is not None:
            index.verify_document(path)

    def _save(self, path: str, text: str | None) -> None:
        index = self.services.index_if_ready()
        if index is None:
            return
        self._accepted.pop(path, None)  # a new file exists on disk now
        self._update(index, path, text)
        if self._indexable(index, path):
            index.save_document(path)

    def _close(self, path: str) -> None:
        self._accepted.pop(path, None)
        index = self.services.index_if_ready()
        if index is not None and index.scanner.key_for(path) is not None:
            index.close_document(path)  # the disk version is read again

    def _disk_changed(self, path: str, text: str | None, deleted: bool) -> None:
        index = self.services.index_if_ready()
        if index is None:
            return
        self._accepted.pop(path, None)
        self._update(index, path, text)
        if deleted:
            self._remove_tree(index, path)
        else:
            self._refresh_tree(index, path)

    def _rename(self, old: str, new: str, text: str | None) -> None:
        index = self.services.index_if_ready()
        if index is None:
            return
        self._accepted.pop(old, None)
        self._accepted.pop(new, None)
        self._update(index, old, text)
        scanner = index.scanner
        old_key = scanner.key_for(old)
        if (
            old_key is not None
            and old_key in index.graph.files
            and os.path.isfile(new)
            and scanner.accepts(Path(new))
        ):
            index.rename(old, new)  # keeps the tags (and an open buffer's text)
            return
        # A folder, a move across the workspace's edge, or to an ignored name.
        self._remove_tree(index, old)
        self._refresh_tree(index, new)

    def _replay(self, index: RepoIndex, documents: dict[str, str], touched: Iterable[str]) -> None:
        self._accepted.clear()
        for path in touched:
            if os.path.exists(path):
                self._refresh_tree(index, path)
            else:
                self._remove_tree(index, path)
        for path, text in documents.items():
            self._update(index, path, text)

    @staticmethod
    def _remove_tree(index: RepoIndex, path: str) -> None:
        """Drop a file, or every file under a folder."""
        key = index.scanner.key_for(path)
        if key is None:
            return
        inside = key + "/"
        for gone in [k for k in tuple(index.graph.files) if k == key or k.startswith(inside)]:
            index.remove(gone)

    @staticmethod
    def _refresh_tree(index: RepoIndex, path: str) -> None:
        """Re-read a file, or every indexable file under a folder, from the disk."""
        scanner = index.scanner
        key = scanner.key_for(path)
        if key is None:
            return
        if not os.path.isdir(path):
            index.refresh_file(path)  # drops it when gone or not indexable
            return
        for folder, dirnames, filenames in os.walk(path):
            relative = scanner.key_for(folder)
            dirnames[:] = [
                name for name in dirnames if not scanner.is_excluded_name(f"{relative}/{name}/")
            ]
            for name in filenames:
                index.refresh_file(os.path.join(folder, name))


def register(server: QcnServer) -> None:
    indexer = DocumentIndexer(server, server.services)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: QcnServer, params: types.DidOpenTextDocumentParams) -> None:
        indexer.text_changed(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: QcnServer, params: types.DidChangeTextDocumentParams) -> None:
        indexer.text_changed(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: QcnServer, params: types.DidSaveTextDocumentParams) -> None:
        indexer.saved(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: QcnServer, params: types.DidCloseTextDocumentParams) -> None:
        indexer.closed(params.text_document.uri)

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched_files(ls: QcnServer, params: types.DidChangeWatchedFilesParams) -> None:
        for change in params.changes:
            indexer.disk_changed(change.uri, deleted=change.type == types.FileChangeType.Deleted)

    @server.feature(types.WORKSPACE_DID_CREATE_FILES, ALL_FILES)
    def did_create_files(ls: QcnServer, params: types.CreateFilesParams) -> None:
        for created in params.files:
            indexer.disk_changed(created.uri, deleted=False)

    @server.feature(types.WORKSPACE_DID_DELETE_FILES, ALL_FILES)
    def did_delete_files(ls: QcnServer, params: types.DeleteFilesParams) -> None:
        for deleted in params.files:
            indexer.disk_changed(deleted.uri, deleted=True)

    @server.feature(types.WORKSPACE_DID_RENAME_FILES, ALL_FILES)
    def did_rename_files(ls: QcnServer, params: types.RenameFilesParams) -> None:
        for renamed in params.files:
            indexer.renamed(renamed.old_uri, renamed.new_uri)

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def did_change_workspace_folders(
        ls: QcnServer, params: types.DidChangeWorkspaceFoldersParams
    ) -> None:
        # pygls has updated ls.workspace's folders: the index is rebuilt over the new set.
        ls.services.workspace_folders_changed()

    # File-system events are asked for once the client is initialized: the first moment a
    # dynamic registration may be sent.
    server.on_initialized(_register_watcher)


def _register_watcher(server: QcnServer) -> None:
    workspace = server.client_capabilities.workspace
    watched = workspace.did_change_watched_files if workspace else None
    if not (watched and watched.dynamic_registration):
        return
    params = types.RegistrationParams(
        registrations=[
            types.Registration(
                id=WATCHER_REGISTRATION_ID,
                method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                register_options=types.DidChangeWatchedFilesRegistrationOptions(
                    watchers=[types.FileSystemWatcher(glob_pattern="**/*")]
                ),
            )
        ]
    )

    def registered(future: Future[None]) -> None:
        # Not awaited: a client that never answers must not hold `initialized` up.
        if not future.cancelled() and future.exception() is not None:
            logger.warning("file watcher registration failed: %s", future.exception())

    server.client_register_capability(params).add_done_callback(registered)
