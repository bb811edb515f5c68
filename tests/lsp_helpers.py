"""Start the real `qcn-lsp` process over stdio and drive it as an editor does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

SETTINGS_PREFIX = "qcn-lsp settings: "
REPO_ROOT = Path(__file__).resolve().parent.parent


def server_env(**extra: str) -> dict[str, str]:
    # pytest-lsp replaces the whole environment: start from ours.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("QCN_MODEL", None)
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def lsp_session(
    *,
    profile: str = "visual_studio_code",
    initialization_options: Any = None,
    configuration: dict[str, Any] | None = None,
    workspace: Path | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[tuple[LanguageClient, types.InitializeResult]]:
    """A started, initialized client session with the real server; shut down on exit."""
    config = ClientServerConfig(
        # INFO, not DEBUG: pytest-lsp forwards stderr line by line with asyncio's 64 KiB line
        # limit, and pygls logs whole message bodies at DEBUG.
        server_command=[sys.executable, "-m", "qcn_lsp", "--log-level", "INFO"],
        server_env=server_env(**(env or {})),
    )
    client = await config.start()
    assert isinstance(client, LanguageClient)
    if configuration is not None:
        client.set_configuration(configuration)
    root_uri = workspace.as_uri() if workspace else None
    folders = (
        [types.WorkspaceFolder(uri=workspace.as_uri(), name=workspace.name)] if workspace else None
    )
    try:
        result = await client.initialize_session(
            types.InitializeParams(
                capabilities=client_capabilities(profile),
                initialization_options=initialization_options,
                root_uri=root_uri,
                workspace_folders=folders,
            )
        )
        yield client, result
    finally:
        # Always shut the server down (a failed assertion included): stopping a client whose
        # server never got `exit` waits forever.
        try:
            await asyncio.wait_for(client.shutdown_session(), 10)
        finally:
            await client.stop()


async def effective_settings(client: LanguageClient, **expected: Any) -> dict[str, Any]:
    """The server's latest settings report (window/logMessage) once it shows `expected`.

    Keys in `expected` use `__` for dots: completion__maxTokens=33.
    """
    want = {key.replace("__", "."): value for key, value in expected.items()}
    settings: dict[str, Any] = {}
    for _ in range(200):
        for message in reversed(client.log_messages):
            if message.message.startswith(SETTINGS_PREFIX):
                settings = json.loads(message.message.removeprefix(SETTINGS_PREFIX))
                break
        if settings and all(settings.get(k) == v for k, v in want.items()):
            return settings
        await asyncio.sleep(0.05)
    raise AssertionError(f"server settings never showed {want}; last report: {settings}")
