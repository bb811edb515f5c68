"""Settings from initializationOptions, workspace/configuration and didChangeConfiguration."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lsprotocol import types

if TYPE_CHECKING:
    from qcn_lsp.server import QcnServer

logger = logging.getLogger(__name__)

SECTION = "qcn"


def _qcn_section(raw: Any) -> Any:
    """Clients send either the qcn object itself or an object with a `qcn` key."""
    if isinstance(raw, Mapping) and SECTION in raw:
        return raw[SECTION]
    return raw


def _client_pulls_configuration(server: QcnServer) -> bool:
    workspace = server.client_capabilities.workspace
    return bool(workspace and workspace.configuration)


async def _pull_configuration(server: QcnServer) -> None:
    if not _client_pulls_configuration(server):
        return
    try:
        result = await server.workspace_configuration_async(
            types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
        )
    except Exception as exc:  # a client error here must not take the server down
        logger.warning("workspace/configuration failed: %s", exc)
        return
    if result and result[0] is not None:
        server.apply_settings(result[0], "workspace/configuration")


def register(server: QcnServer) -> None:
    @server.feature(types.INITIALIZE)
    def on_initialize(ls: QcnServer, params: types.InitializeParams) -> None:
        ls.apply_settings(_qcn_section(params.initialization_options), "initializationOptions")

    @server.feature(types.INITIALIZED)
    async def on_initialized(ls: QcnServer, params: types.InitializedParams) -> None:
        await _pull_configuration(ls)
        # Model load and indexing start in the background with the settings just pulled.
        ls.services.start()
        ls.client_initialized()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def on_did_change_configuration(
        ls: QcnServer, params: types.DidChangeConfigurationParams
    ) -> None:
        # Pull-model clients send an empty notification as a hint; push-model ones send values.
        if _client_pulls_configuration(ls):
            await _pull_configuration(ls)
        else:
            ls.apply_settings(_qcn_section(params.settings), "didChangeConfiguration")
