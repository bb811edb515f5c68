"""The shared services: background loading, clear errors, status, reload on settings change."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from tests.lsp.helpers import lsp_session, until_status


async def test_missing_model_file_is_reported_and_fixed_by_settings(
    tiny_model: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.gguf"
    async with lsp_session(
        profile="neovim",
        initialization_options={"model": {"path": str(missing)}, "cache": {"dir": str(tmp_path)}},
        workspace=tmp_path,
    ) as (client, _):
        state = await until_status(client, lambda s: "not found" in s["engine"]["state"])
        assert str(missing) in state["engine"]["state"]
        assert any("model file not found" in m.message for m in client.messages)
        assert state["index"]["state"] != "not started"
        client.set_configuration({"qcn": {"model": {"path": str(tiny_model)}}})
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
        state = await until_status(client, lambda s: s["engine"]["state"] == "ready")
        assert state["engine"]["model"] == str(tiny_model)
        assert state["engine"]["arch"] == "qwen3next"
        assert state["lastRequest"] is None


async def test_start_up_does_not_wait_for_the_model(tiny_model: Path, tmp_path: Path) -> None:
    async with lsp_session(
        initialization_options={"model": {"path": str(tiny_model)}, "cache": {"dir": str(tmp_path)}}
    ) as (client, result):
        # initialize answered before the model loaded: the first status may still say loading.
        assert result.capabilities.execute_command_provider is not None
        assert "qcn.status" in result.capabilities.execute_command_provider.commands
        await until_status(client, lambda s: s["engine"]["state"] == "ready")
