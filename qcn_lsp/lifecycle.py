"""How the server stops: `shutdown`, `exit`, and a client that goes away without them.

- `shutdown` stops serving at once: generations are cancelled at their next micro-batch or
  token, requests in flight are answered "server shutting down", and the backend persists its
  resume point in the background. The reply waits for that at most `SHUTDOWN_REPLY_S`:
  editors give `shutdown` little time (eglot 1.5 s, then it kills the server on `exit`).
- `exit` waits for the persist at most `EXIT_PERSIST_S` more, then the process ends, whatever
  threads are still blocked (the stdin reader, a long micro-batch): exit code 0 after
  `shutdown`, 1 without.
- The client closing stdin, its process dying (`processId` of `initialize`), or SIGTERM: the
  same as `exit` without `shutdown`. Nothing holds a lock across processes (the caches are
  SQLite files, whose locks die with the process), so the next server starts cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qcn_lsp.server import QcnServer

logger = logging.getLogger(__name__)

SHUTDOWN_REPLY_S = 0.1
EXIT_PERSIST_S = 5.0
PARENT_POLL_S = 2.0
EXIT_WITHOUT_SHUTDOWN = 1


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    # A zombie (dead, not yet reaped by its parent) still answers kill(0).
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


class Lifecycle:
    """The server's stop sequence; one per server."""

    def __init__(self, server: QcnServer) -> None:
        self.server = server
        self.shutdown_requested = False
        self._finishing = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def shutdown(self) -> None:
        """The `shutdown` request: stop serving, reply within SHUTDOWN_REPLY_S."""
        self.shutdown_requested = True
        services = self.server.services
        services.begin_shutdown()
        started = time.monotonic()
        stopped = self.server.stop_requests()
        if stopped:
            await asyncio.wait(stopped, timeout=SHUTDOWN_REPLY_S)
        remaining = max(0.0, SHUTDOWN_REPLY_S - (time.monotonic() - started))
        if not await services.closed(remaining):
            logger.info("shutdown: the state is still being persisted; `exit` waits for it")

    async def finish(self, reason: str, code: int | None = None) -> None:
        """End the process: stop serving, wait for the persist (bounded), exit."""
        if self._finishing:
            # Another caller is ending the process (an `exit`, then the client closed stdin):
            # wait for it to, rather than return and let asyncio.run cancel it.
            await asyncio.get_running_loop().create_future()
            return
        self._finishing = True
        if code is None:
            code = 0 if self.shutdown_requested else EXIT_WITHOUT_SHUTDOWN
        logger.info("exiting (%s)", reason)
        services = self.server.services
        services.begin_shutdown()
        if not await services.closed(EXIT_PERSIST_S):
            logger.warning(
                "the model state was not persisted within %.0f s: exiting without it "
                "(the next start prefills the repository context again)",
                EXIT_PERSIST_S,
            )
        logging.shutdown()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        # Not sys.exit: interpreter shutdown would join the thread blocked reading stdin and
        # any worker still inside llama.cpp, and an editor waits on the process.
        os._exit(code)

    def spawn_finish(self, reason: str, code: int | None = None) -> None:
        task = asyncio.get_running_loop().create_task(self.finish(reason, code))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def watch_parent(self, pid: int | None) -> None:
        """Exit when the editor's process (`initialize`'s processId) is gone. A pid that does
        not exist at start is another PID namespace's (containers, remote set-ups): ignored."""
        if pid is None or pid == os.getpid() or not process_alive(pid):
            return
        task = asyncio.get_running_loop().create_task(self._watch(pid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, pid: int) -> None:
        while process_alive(pid):
            await asyncio.sleep(PARENT_POLL_S)
        await self.finish(f"the editor's process {pid} is gone")

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
            loop.add_signal_handler(signal.SIGTERM, self.spawn_finish, "SIGTERM")
