"""The shared services' life cycle on the server, and the `qcn.status` command."""

from __future__ import annotations

import inspect
from typing import Any

from lsprotocol import types

from qcn_lsp.server import QcnServer
from qcn_lsp.services import Services

STATUS_COMMAND = "qcn.status"


def register(server: QcnServer) -> None:
    services = Services(server)
    server.services = services  # type: ignore[attr-defined]
    server.on_settings_changed(lambda _ls, changed: services.settings_changed(changed))

    # `initialized` already has a handler (configuration pulls the client's settings there):
    # start the services after it, so the first load uses the pulled settings.
    features = server.protocol.fm.features
    previous = features.get(types.INITIALIZED)

    async def start_after_initialized(*args: Any) -> None:
        if previous is not None:
            result = previous(*args)
            if inspect.isawaitable(result):
                await result
        services.start()

    features[types.INITIALIZED] = start_after_initialized

    @server.feature(types.SHUTDOWN)
    async def on_shutdown(ls: QcnServer, params: None) -> None:
        await services.close()

    @server.command(STATUS_COMMAND)
    def status(ls: QcnServer, *args: Any) -> dict[str, Any]:
        """Engine (model, arch, hybrid, checkpoints, bytes, last request), index and settings."""
        return services.status()
