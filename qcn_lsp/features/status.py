"""`qcn.status`: engine, cache, index, settings and open documents; and the stop sequence
(`shutdown`, `exit`, the editor's process gone: qcn_lsp.lifecycle)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import resource
import threading
from typing import Any

from lsprotocol import types

# Imported at run time: pygls resolves the annotations of command handlers.
from qcn_lsp.server import QcnServer

STATUS_COMMAND = "qcn.status"


def register(server: QcnServer) -> None:
    @server.feature(types.SHUTDOWN)
    async def on_shutdown(ls: QcnServer, params: None) -> None:
        await ls.lifecycle.shutdown()

    @server.feature(types.EXIT)
    async def on_exit(ls: QcnServer, params: None) -> None:
        await ls.lifecycle.finish("exit notification")

    server.on_initialized(lambda ls: ls.lifecycle.watch_parent(ls.process_id))

    @server.command(STATUS_COMMAND)
    def status(ls: QcnServer, *args: Any) -> dict[str, Any]:
        """Engine (model, arch, hybrid, checkpoints, bytes, last request), index, settings, and
        the version and text digest of each open document (is the editor's text the server's?),
        the process audit (workspace writes refused, network use), and what the process holds
        (memory, threads, tasks: does a long session leak?)."""
        return {
            **ls.services.status(),
            "documents": _documents(ls),
            "audit": ls.audit.report(),
            "process": _process(ls),
        }


def _documents(ls: QcnServer) -> dict[str, dict[str, Any]]:
    return {
        uri: {
            "version": document.version,
            "chars": len(document.source),
            "sha256": hashlib.sha256(document.source.encode("utf-8", "surrogatepass")).hexdigest(),
        }
        for uri, document in ls.workspace.text_documents.items()
    }


def _process(ls: QcnServer) -> dict[str, Any]:
    def count(folder: str) -> int | None:
        try:
            return len(os.listdir(folder))
        except OSError:  # not Linux
            return None

    try:
        with open("/proc/self/statm") as statm:
            rss: int | None = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        rss = None
    return {
        "rssBytes": rss,
        "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "threads": count("/proc/self/task") or threading.active_count(),
        "openFiles": count("/proc/self/fd"),
        "asyncioTasks": len(asyncio.all_tasks()),
        "handlersInFlight": ls.tracked_handlers(),
    }
