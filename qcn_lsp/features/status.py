"""`qcn.status`: engine, cache, index and settings state; and closing the services on shutdown."""

from __future__ import annotations

from typing import Any

from lsprotocol import types

# Imported at run time: pygls resolves the annotations of command handlers.
from qcn_lsp.server import QcnServer

STATUS_COMMAND = "qcn.status"


def register(server: QcnServer) -> None:
    @server.feature(types.SHUTDOWN)
    async def on_shutdown(ls: QcnServer, params: None) -> None:
        await ls.services.close()

    @server.command(STATUS_COMMAND)
    def status(ls: QcnServer, *args: Any) -> dict[str, Any]:
        """Engine (model, arch, hybrid, checkpoints, bytes, last request), index and settings."""
        return ls.services.status()
