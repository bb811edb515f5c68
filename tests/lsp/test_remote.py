"""Every LSP feature on the OpenAI-compatible backend, end to end: the real qcn-lsp process
talking to a real llama_cpp.server on loopback that serves the tiny generated model.

Random weights write noise: these tests check protocol shapes, streaming, cancellation,
failures and what the user is told, never the text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from tests.llama_cpp_server import MODEL_ALIAS, N_CTX, LlamaCppServer, llama_cpp_server
from tests.lsp.helpers import (
    inline_params,
    lsp_session,
    once_indexed,
    open_file,
    record_progress,
    status,
    until_ready,
    until_status,
)
from tests.lsp.test_actions_model import fix_params

SOURCE = "import os\n\n\ndef area(width, height):\n    return width * height\n\n\nx = \n"
KEY = "sk-remote-test-6f1c2d9e8b7a"
KEY_ENV = "QCN_TEST_REMOTE_KEY"


@pytest.fixture(scope="module")
def server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppServer]:
    with llama_cpp_server(tiny_model, tmp_path_factory.mktemp("server")) as running:
        yield running


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "shapes.py").write_text(SOURCE)
    (root / "pkg" / "calc.py").write_text("def add(a, b):\n    return a +\n\nprint(add(1, 2))\n")
    (root / "pkg" / "use.py").write_text("from pkg.calc import add\n\nprint(add(3, 4))\n")
    return root


def remote(url: str, **backend: Any) -> dict[str, Any]:
    return {
        "backend": {"kind": "openai", "baseUrl": url, "model": MODEL_ALIAS, **backend},
        # llama_cpp.server does not report its window: the user sets it.
        "model": {"contextLength": N_CTX},
        "context": {"budgetTokens": 512},
        "completion": {"maxTokens": 8, "debounceMs": 0, "streamNotifications": True},
        "edits": {"maxTokens": 24, "maxToolRounds": 1},
    }


def spots(text: str) -> Iterator[types.Position]:
    """Cursor positions at line ends (random weights may stop at once at one of them)."""
    for line, content in enumerate(text.splitlines()):
        yield types.Position(line=line, character=len(content))


async def test_inline_and_popup_completions_stream_from_the_server(
    server: LlamaCppServer, project: Path
) -> None:
    async with lsp_session(workspace=project, initialization_options=remote(server.base_url)) as (
        client,
        _,
    ):
        received = record_progress(client)
        uri = open_file(client, project / "pkg" / "shapes.py")
        state = await until_ready(client)
        assert state["engine"]["server"] == f"llama-cpp-python at {server.base_url}"
        assert state["engine"]["model"] == MODEL_ALIAS
        streamed = None
        for position in spots(SOURCE):
            received.clear()
            answer = await client.text_document_inline_completion_async(
                inline_params(uri, position)
            )
            assert isinstance(answer, types.InlineCompletionList)
            if answer.items and len(received) > 2:
                streamed = received
                break
        assert streamed, "no spot streamed text"
        final = streamed[-1]
        assert final.done is True and final.report.restoreKind == "server"
        assert all(n.done is False for n in streamed[:-1])
        assert all(final.text.startswith(n.text) for n in streamed[:-1])
        popup = await client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=7, character=4),
            )
        )
        assert isinstance(popup, types.CompletionList)
        # Only the configured server is contacted (the process audit records every lookup
        # and connection).
        network = (await status(client))["audit"]["network"]
        host, port = server.base_url.split("//")[1].split("/")[0].rsplit(":", 1)
        assert network and all(host in entry and port in entry for entry in network), network


async def test_cancel_request_closes_the_servers_stream(
    tiny_model: Path, project: Path, tmp_path: Path
) -> None:
    # Its own server: a cancelled stream whose random text llama_cpp.server holds back (an
    # incomplete UTF-8 tail) keeps it busy until max_tokens (tests/engine shows the server
    # stopping when it has text to send).
    with llama_cpp_server(tiny_model, tmp_path) as own:
        settings = remote(own.base_url)
        settings["completion"]["maxTokens"] = 200
        async with lsp_session(initialization_options=settings) as (client, _):
            received = record_progress(client)
            uri = open_file(client, project / "pkg" / "shapes.py")
            await until_ready(client)
            for k, position in enumerate(reversed(list(spots(SOURCE)))):
                received.clear()
                request = client.protocol.send_request(
                    types.TEXT_DOCUMENT_INLINE_COMPLETION,
                    inline_params(uri, position),
                    msg_id=f"long-{k}",
                )
                for _ in range(400):
                    if any(n.text for n in received) or request.done():
                        break
                    await asyncio.sleep(0.05)
                if request.done():
                    continue  # stopped at once here: another spot
                client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=f"long-{k}"))
                with pytest.raises(JsonRpcException) as cancelled:
                    await asyncio.wrap_future(request)
                assert cancelled.value.code == -32800
                break
            else:
                raise AssertionError("no spot kept generating")
            # The backend closed the stream, and nothing failed.
            state = await until_status(client, lambda s: s["engine"]["stats"]["cancelled"] >= 1)
            assert state["engine"]["stats"]["failed"] == 0
            assert state["engine"]["state"] == "ready"


async def test_a_server_killed_mid_request_gives_one_message_and_the_lsp_stays_up(
    tiny_model: Path, project: Path, tmp_path: Path
) -> None:
    with llama_cpp_server(tiny_model, tmp_path) as doomed:
        settings = remote(doomed.base_url, connectTimeoutS=1)
        settings["completion"]["maxTokens"] = 3000
        async with lsp_session(initialization_options=settings) as (client, _):
            received = record_progress(client)
            uri = open_file(client, project / "pkg" / "shapes.py")
            await until_ready(client)
            message = None
            for position in spots(SOURCE):
                received.clear()
                request = asyncio.ensure_future(
                    client.text_document_inline_completion_async(inline_params(uri, position))
                )
                for _ in range(200):
                    if any(n.text for n in received) or request.done():
                        break
                    await asyncio.sleep(0.05)
                if request.done():
                    continue
                doomed.kill()
                with pytest.raises(JsonRpcException) as failure:
                    await request
                message = str(failure.value)
                break
            assert message is not None, "no spot kept generating"
            assert "closed the connection mid-answer" in message
            # Later keystrokes fail too (nobody is there), but the user is told only once.
            for position in list(spots(SOURCE))[:3]:
                with pytest.raises(JsonRpcException, match="cannot reach the model server"):
                    await client.text_document_inline_completion_async(inline_params(uri, position))
            shown = [m.message for m in client.messages if "qcn-lsp" in m.message]
            assert len([m for m in shown if "mid-answer" in m or "cannot reach" in m]) == 1
            state = await status(client)  # the LSP is up and says what happened
            assert "cannot reach the model server" in state["engine"]["lastError"]


async def test_a_wrong_key_is_a_clear_message_and_the_key_is_never_shown(
    tiny_model: Path, project: Path, tmp_path: Path
) -> None:
    log = tmp_path / "qcn-lsp.log"
    with llama_cpp_server(tiny_model, tmp_path, api_key=KEY) as keyed:
        async with lsp_session(
            initialization_options=remote(keyed.base_url, apiKeyEnv=KEY_ENV),
            env={KEY_ENV: KEY[::-1]},
            server_args=["--log-file", str(log)],
        ) as (client, _):
            state = await until_status(client, lambda s: "refused" in s["engine"]["state"])
            assert "HTTP 401" in state["engine"]["state"]
            assert f"${KEY_ENV}" in state["engine"]["state"]
            shown = " ".join(m.message for m in client.messages)
            assert "refused the request (HTTP 401" in shown
            logged = " ".join(m.message for m in client.log_messages)
        everything = " ".join([shown, logged, str(state), log.read_text()])
        assert KEY[::-1] not in everything and KEY not in everything
        # The right key works.
        async with lsp_session(
            initialization_options=remote(keyed.base_url, apiKeyEnv=KEY_ENV),
            env={KEY_ENV: KEY},
        ) as (client, _):
            await until_ready(client)


async def test_an_unset_key_variable_and_a_model_not_served(
    server: LlamaCppServer, project: Path
) -> None:
    async with lsp_session(initialization_options=remote(server.base_url, apiKeyEnv=KEY_ENV)) as (
        client,
        _,
    ):
        state = await until_status(client, lambda s: KEY_ENV in s["engine"]["state"])
        assert "not set" in state["engine"]["state"]
    settings = remote(server.base_url)
    settings["backend"]["model"] = "qwen3-coder-next"
    async with lsp_session(initialization_options=settings) as (client, _):
        state = await until_status(client, lambda s: "does not serve" in s["engine"]["state"])
        assert f"it serves: '{MODEL_ALIAS}'" in state["engine"]["state"]
        shown = " ".join(m.message for m in client.messages)
        assert "backend.model" in shown


async def test_code_actions_and_a_refactor_run_on_the_server(
    server: LlamaCppServer, project: Path
) -> None:
    async with lsp_session(
        profile="visual_studio_code",
        workspace=project,
        initialization_options=remote(server.base_url),
    ) as (client, _):

        @client.feature(types.WORKSPACE_APPLY_EDIT)
        def apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
            return types.ApplyWorkspaceEditResult(applied=False, failure_reason="test")

        uri = open_file(client, project / "pkg" / "calc.py")
        await until_ready(client)
        actions = await client.text_document_code_action_async(fix_params(uri))
        fix = (actions or [])[0]
        assert isinstance(fix, types.CodeAction)
        resolved = await client.code_action_resolve_async(fix)
        # An edit that passed the checks, or the reason there is none: never a failure.
        assert resolved.edit is not None or (resolved.disabled and resolved.disabled.reason)
        command = types.ExecuteCommandParams(
            command="qcn.refactor",
            arguments=[{"instruction": "rename add to plus", "symbol": "add"}],
        )
        result = await once_indexed(lambda: client.workspace_execute_command_async(command))
        assert result["cancelled"] is False
        [reports] = [
            r
            for r in client.progress_reports.values()
            if getattr(r[0], "title", None) == "qcn: refactor add"
        ]
        assert isinstance(reports[-1], types.WorkDoneProgressEnd)
        stats = (await status(client))["engine"]["stats"]
        assert stats["failed"] == 0 and stats["requests"] >= 3  # one fix + two files
