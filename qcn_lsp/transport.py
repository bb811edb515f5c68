"""How the server meets its client: LSP over stdio (what editors launch) or over TCP, with one
line on stderr for each thing that goes wrong at that level instead of a traceback."""

from __future__ import annotations

import errno
import re
import socket
import sys
from typing import TYPE_CHECKING, BinaryIO, cast

from pygls.lsp.server import LanguageServer

if TYPE_CHECKING:
    from qcn_lsp.server import QcnServer

# An LSP message starts with its header fields (LSP base protocol: Content-Length, Content-Type).
_HEADER = re.compile(rb"^content-(length|type)\s*:", re.IGNORECASE)


def say(message: str) -> None:
    """One line for the person who started the server (stderr: stdout carries the protocol)."""
    sys.stderr.write(f"qcn-lsp: {message}\n")
    sys.stderr.flush()


class LspInput:
    """Stdin as pygls reads it, cut off at the first line when that line is not an LSP header:
    a person typing, or a pipe of something else, gets a message instead of silence."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._checked = False
        self.rejected: bytes | None = None

    def readline(self) -> bytes:
        line = self._stream.readline()
        if not self._checked and line.strip():
            self._checked = True
            if not _HEADER.match(line):
                self.rejected = line
                return b""  # the end of input: the server shuts down
        return line

    def read(self, size: int) -> bytes:
        return self._stream.read(size)


def serve_stdio(server: QcnServer) -> int:
    if sys.stdin.isatty():
        say(
            "serving LSP on stdin/stdout, which is how editors start it (editors/README.md); "
            "Ctrl-D ends it, `qcn-lsp --help` lists the other commands"
        )
    stdin = LspInput(sys.stdin.buffer)

    def ended() -> int | None:
        if stdin.rejected is None:
            return None
        got = stdin.rejected.decode("utf-8", "replace").strip()
        say(
            f"this is a language server: it speaks LSP (JSON-RPC with Content-Length headers) "
            f"on stdin/stdout and is started by an editor (editors/README.md), but it read "
            f"{got[:60]!r}; `qcn-lsp --help` lists the other commands"
        )
        return 2

    server.start_io(stdin=cast(BinaryIO, stdin), ended=ended)  # ends the process
    return 0


def _listen_problem(host: str, port: int, error: OSError) -> str:
    where = f"cannot listen on {host}:{port}"
    if isinstance(error, socket.gaierror):
        return f"{where}: unknown host {host!r}; use an address of this machine, e.g. 127.0.0.1"
    if error.errno == errno.EADDRINUSE:
        return (
            f"{where}: the port is in use by another program; choose another port "
            f"(--tcp {host}:0 picks a free one)"
        )
    if error.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need root); choose a port above 1024"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"{where}: {host} is not an address of this machine; use e.g. 127.0.0.1"
    return f"{where}: {error.strerror or error}"


def serve_tcp(server: LanguageServer, host: str, port: int) -> int:
    """Serve one client over TCP; port 0 takes a free port. Says where it listens."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        # Bind first, to turn a bad address into a message and to learn which port 0 gave.
        with socket.create_server((host, port), family=family) as probe:
            port = probe.getsockname()[1]
    except OSError as error:
        say(_listen_problem(host, port, error))
        return 1
    say(f"serving LSP on {host}:{port} (TCP) for one client; Ctrl-C ends it")
    try:
        server.start_tcp(host, port)
    except OSError as error:
        say(_listen_problem(host, port, error))
        return 1
    return 0
