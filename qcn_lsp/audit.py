"""What the server process itself does to files and the network, watched from inside it.

An audit hook (PEP 578) sees what Python code in the process opens, renames, removes and
connects to, on every thread:
- a write into a workspace folder (a file opened for writing, a rename, removal, link or
  folder made there, an SQLite database opened there) raises PermissionError: the server
  proposes edits and the editor applies them (qcn_lsp.sandbox). The cache directory is
  exempt, should a user put it inside a workspace.
- every socket connection, datagram and name lookup is recorded; `qcn.status` shows them
  (`audit.network`): with the local backend the list stays empty.
llama.cpp's own C code is not audited; it reads only the model file.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# Events whose first argument (and, for the two-path ones, the second) is a path written to.
_PATH_EVENTS = frozenset(
    {"os.remove", "os.rmdir", "os.mkdir", "os.truncate", "shutil.rmtree", "sqlite3.connect"}
)
_TWO_PATH_EVENTS = frozenset({"os.rename", "os.symlink", "os.link"})
_NETWORK_EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.getaddrinfo"})
MAX_RECORDED = 100


def _writes(mode: Any, flags: Any) -> bool:
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


class ProcessAudit:
    """The audit hook's state: roots to protect, what was refused, what was contacted."""

    def __init__(self) -> None:
        # Immutable tuples, replaced whole: the hook reads them from any thread.
        self._roots: tuple[str, ...] = ()
        self._exempt: tuple[str, ...] = ()
        self._lock = threading.Lock()
        self.refused: list[str] = []
        self.network: list[str] = []
        self.installed = False

    def install(self) -> None:
        """For the life of the process (hooks cannot be removed): only the server's main."""
        if not self.installed:
            sys.addaudithook(self._hook)
            self.installed = True

    def protect(self, roots: Sequence[Path], exempt: Sequence[Path]) -> None:
        """Refuse writes under `roots` (real paths), except under `exempt`."""
        self._roots = tuple(_real(root) for root in roots)
        self._exempt = tuple(_real(path) for path in exempt)

    def report(self) -> dict[str, Any]:
        with self._lock:
            return {
                "installed": self.installed,
                "refusedWrites": list(self.refused),
                "network": list(self.network),
            }

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            if len(args) >= 3 and _writes(args[1], args[2]):
                self._check_write(event, args[0])
        elif event in _PATH_EVENTS:
            self._check_write(event, args[0] if args else None)
        elif event in _TWO_PATH_EVENTS:
            self._check_write(event, args[1] if len(args) > 1 else None)
            if event == "os.rename":
                self._check_write(event, args[0])
        elif event in _NETWORK_EVENTS:
            target = args[1] if event != "socket.getaddrinfo" else args[:2]
            self._record(self.network, f"{event} {target!r}")

    def _check_write(self, event: str, target: Any) -> None:
        roots = self._roots
        if not roots or not isinstance(target, str | bytes | os.PathLike):
            return  # file descriptors: opened earlier, checked then
        path = _real(target)
        if any(_under(path, root) for root in roots) and not any(
            _under(path, exempt) for exempt in self._exempt
        ):
            self._record(self.refused, f"{event} {path}")
            raise PermissionError(f"qcn-lsp never writes into the workspace: {path}")

    def _record(self, into: list[str], entry: str) -> None:
        with self._lock:
            if len(into) < MAX_RECORDED:
                into.append(entry)


def _real(path: Any) -> str:
    return os.path.realpath(os.fsdecode(path))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
