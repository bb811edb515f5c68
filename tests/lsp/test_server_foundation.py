"""The server starts over stdio, initializes with settings, syncs documents, shuts down."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from lsprotocol import types

from tests.lsp.helpers import (
    RawLspProcess,
    change,
    effective_settings,
    lsp_session,
    open_document,
    server_env,
    status,
)


@pytest.mark.parametrize("profile", ["visual_studio_code", "neovim"])
async def test_initialize_and_shutdown(profile: str) -> None:
    async with lsp_session(profile=profile) as (client, result):
        assert result.server_info is not None and result.server_info.name == "qcn-lsp"
        sync = result.capabilities.text_document_sync
        assert isinstance(sync, types.TextDocumentSyncOptions)
        assert sync.change == types.TextDocumentSyncKind.Incremental
        assert sync.open_close
        assert not client.messages, client.messages


def at(line: int, character: int) -> types.Position:
    return types.Position(line=line, character=character)


async def test_incremental_sync_and_settings_from_all_sources(tmp_path: Path) -> None:
    async with lsp_session(
        initialization_options={"completion": {"maxTokens": 33}},
        configuration={"qcn": {"context": {"budgetTokens": 2048}}},
        workspace=tmp_path,
    ) as (client, _):
        await effective_settings(client, completion__maxTokens=33, context__budgetTokens=2048)

        uri = (tmp_path / "a.py").as_uri()
        open_document(client, uri, "def f():\n    return 1\n")
        # Replace, insert a line break, replace and delete, with columns in UTF-16 units after
        # an astral character (2 units, 1 Python character).
        change(client, uri, 2, at(1, 11), at(1, 12), "42")
        change(client, uri, 3, at(0, 8), at(0, 8), "\n    x = '\N{SNAKE}'")
        change(client, uri, 4, at(1, 9), at(1, 11), "\N{SNAKE}\N{SNAKE}")
        change(client, uri, 5, at(1, 13), at(1, 14), "!")
        change(client, uri, 6, at(2, 4), at(2, 11), "")
        expected = "def f():\n    x = '\N{SNAKE}\N{SNAKE}!\n    42\n"
        document = (await status(client))["documents"][uri]
        assert document["version"] == 6
        assert document["chars"] == len(expected)
        assert document["sha256"] == hashlib.sha256(expected.encode()).hexdigest()

        client.set_configuration({"qcn": {"completion": {"temperature": 0.5}}})
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
        await effective_settings(client, completion__temperature=0.5, completion__maxTokens=33)
        # No model is configured in this test: the one message says so; settings raise none.
        others = [m for m in client.messages if "no model configured" not in m.message]
        assert not others, others


async def test_bad_settings_warn_and_never_crash() -> None:
    async with lsp_session(
        initialization_options={
            "model": {"contextLength": "big", "threadz": 4},
            "completion.temperature": True,
            "backend": {"kind": "cloud"},
        },
    ) as (client, _):
        settings = await effective_settings(client)
        warnings = "\n".join(m.message for m in client.messages)
        for key in (
            "model.contextLength",
            "model.threadz",
            "completion.temperature",
            "backend.kind",
        ):
            assert key in warnings
        assert all(m.type == types.MessageType.Warning for m in client.messages)
        assert settings["model.contextLength"] == 32768
        assert settings["backend.kind"] == "local"


def test_malformed_request_params_get_an_error() -> None:
    server = RawLspProcess()
    try:
        server.initialize()
        for method, params in [
            ("textDocument/hover", 5),
            ("textDocument/codeAction", "not an object"),
            ("textDocument/completion", [1, 2]),
        ]:
            response = server.request(method, params)
            assert response["error"]["code"] == -32602, response
            assert method in response["error"]["message"]
        assert server.request("no/suchMethod", {})["error"]["code"] == -32601
    finally:
        assert server.close() == 0


def test_cli_help_and_stdout_is_protocol_only() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "qcn_lsp", "--help"],
        capture_output=True,
        text=True,
        env=server_env(),
        check=True,
    ).stdout
    for command in ("make-test-model", "doctor", "index", "context", "--tcp"):
        assert command in out
    for sub in ("make-test-model", "doctor", "index", "context"):
        subprocess.run(
            [sys.executable, "-m", "qcn_lsp", sub, "--help"],
            capture_output=True,
            env=server_env(),
            check=True,
        )


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qcn_lsp", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_make_test_model_then_doctor_reports_a_hybrid_model(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    made = run_cli("make-test-model", str(model), "--preset", "tiny", env=server_env())
    assert made.returncode == 0, made.stderr
    assert "random weights" in made.stdout
    env = {**server_env(), "QCN_MODEL": str(model), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    doctor = run_cli("doctor", env=env)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "architecture qwen3next" in doctor.stdout
    assert "llama_model_is_hybrid=True" in doctor.stdout
    model.write_bytes(model.read_bytes()[:4096])  # a truncated download
    broken = run_cli("doctor", env=env)
    assert broken.returncode == 1
    assert "[!!]" in broken.stdout and "re-download" in broken.stdout
