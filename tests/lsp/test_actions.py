"""Code actions and edit commands through the real server, two client capability sets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from qcn_lsp.wire import LSP_CONVERTER
from tests.lsp.helpers import RawLspProcess, lsp_session, open_file

SOURCE = "def add(a, b):\n    return a +\n\nprint(add(1, 2))\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "calc.py").write_text(SOURCE)
    return root


def diagnostic() -> types.Diagnostic:
    return types.Diagnostic(
        range=types.Range(
            start=types.Position(line=1, character=11), end=types.Position(line=1, character=14)
        ),
        message="expected expression",
        source="pyright",
        severity=types.DiagnosticSeverity.Error,
    )


def action_params(uri: str, *, selection: bool) -> types.CodeActionParams:
    end = types.Position(line=2, character=0) if selection else types.Position(line=1, character=11)
    return types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=types.Range(start=types.Position(line=1, character=11), end=end),
        context=types.CodeActionContext(diagnostics=[diagnostic()]),
    )


async def listed_fix(client: LanguageClient, path: Path) -> tuple[str, types.CodeAction]:
    """Open `path` and list the quick fix for its one diagnostic."""
    uri = open_file(client, path)
    [fix] = (
        await client.text_document_code_action_async(action_params(uri, selection=False))
    ) or []
    assert isinstance(fix, types.CodeAction)
    return uri, fix


@pytest.mark.parametrize("profile", ["visual_studio_code", "neovim"])
async def test_listing_is_instant_and_carries_no_edit(project: Path, profile: str) -> None:
    # No model is configured: listing must not need one.
    async with lsp_session(profile=profile, workspace=project) as (client, result):
        options = result.capabilities.code_action_provider
        assert isinstance(options, types.CodeActionOptions)
        assert options.resolve_provider
        uri = open_file(client, project / "calc.py")
        actions = await client.text_document_code_action_async(action_params(uri, selection=True))
        assert actions is not None
        kinds = [a.kind for a in actions if isinstance(a, types.CodeAction)]
        assert kinds == [types.CodeActionKind.QuickFix, types.CodeActionKind.RefactorRewrite]
        fix = actions[0]
        assert isinstance(fix, types.CodeAction)
        assert fix.edit is None and fix.command is None
        assert list(fix.diagnostics or []) == [diagnostic()]
        assert "expected expression" in fix.title

        only_fixes = action_params(uri, selection=True)
        only_fixes.context.only = [types.CodeActionKind.QuickFix]
        actions = await client.text_document_code_action_async(only_fixes)
        assert [a.kind for a in actions or [] if isinstance(a, types.CodeAction)] == [
            types.CodeActionKind.QuickFix
        ]

        # Unopened and non-file documents: nothing to offer, but an answer.
        other = action_params((project / "missing.py").as_uri(), selection=True)
        assert not await client.text_document_code_action_async(other)


def edit_after_listing(client: LanguageClient, uri: str) -> None:
    """The user types after the action was listed: resolving it must refuse."""
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=SOURCE + "#\n")],
        )
    )


def said(client: LanguageClient, words: str) -> list[str]:
    return [m.message for m in client.messages if words in m.message]


async def until_said(client: LanguageClient, words: str) -> list[str]:
    """The window/showMessage texts with `words`, once there is one."""
    for _ in range(200):
        if said(client, words):
            break
        await asyncio.sleep(0.05)
    return said(client, words)


async def test_resolve_after_an_edit_is_disabled_and_said_once(project: Path) -> None:
    """VS Code shows nothing for a resolved action that came back disabled: one
    window/showMessage says why."""
    async with lsp_session(profile="visual_studio_code", workspace=project) as (client, _):
        uri, fix = await listed_fix(client, project / "calc.py")
        edit_after_listing(client, uri)
        resolved = await client.code_action_resolve_async(fix)
        assert resolved.edit is None
        assert resolved.disabled is not None
        assert "changed since the action was listed" in resolved.disabled.reason
        assert await until_said(client, "changed since") == [f"qcn-lsp: {resolved.disabled.reason}"]


async def test_resolve_errors_for_clients_without_disabled_support(project: Path) -> None:
    async with lsp_session(profile="neovim", workspace=project) as (client, _):
        uri, fix = await listed_fix(client, project / "calc.py")
        # No model configured: a clear error, not a hang and not a broken edit.
        with pytest.raises(JsonRpcException, match="model"):
            await client.code_action_resolve_async(fix)
        edit_after_listing(client, uri)
        with pytest.raises(JsonRpcException, match="changed since the action was listed"):
            await client.code_action_resolve_async(fix)
        assert not said(client, "changed since")  # the error is the one place it shows
        forged = types.CodeAction(title="x", data={"uri": 5})
        with pytest.raises(JsonRpcException, match="not what qcn-lsp listed"):
            await client.code_action_resolve_async(forged)


def test_clients_without_resolve_support_get_a_command(project: Path) -> None:
    """eglot 1.9 cannot resolve: each action carries a command that answers at once, runs the
    model in the background and says why when no edit comes (here: the text moved on).

    A bare JSON-RPC peer with no capabilities (lsprotocol's own client reads a CodeAction
    that has a `command` as a Command)."""
    server = RawLspProcess()
    try:
        result = server.initialize(rootUri=project.as_uri())["result"]
        assert "qcn.runCodeAction" in result["capabilities"]["executeCommandProvider"]["commands"]
        uri = (project / "calc.py").as_uri()
        server.open_document(uri, SOURCE)
        params = LSP_CONVERTER.unstructure(action_params(uri, selection=False))
        [fix] = server.request("textDocument/codeAction", params)["result"]
        assert "edit" not in fix
        assert fix["command"] == {
            "title": fix["title"],
            "command": "qcn.runCodeAction",
            "arguments": [fix["data"]],
        }
        server.send(
            {
                "method": "textDocument/didChange",
                "params": {
                    "textDocument": {"uri": uri, "version": 2},
                    "contentChanges": [{"text": SOURCE + "#\n"}],
                },
            }
        )
        answer = server.request("workspace/executeCommand", fix["command"])
        assert answer == {"jsonrpc": "2.0", "id": answer["id"], "result": None}
        message = server.notification(
            lambda m: m["method"] == "window/showMessage" and "changed" in m["params"]["message"]
        )
        assert message["params"]["message"] == (
            "qcn-lsp: calc.py: changed since the action was listed; ask again"
        )
        forged = server.request(
            "workspace/executeCommand", {"command": "qcn.runCodeAction", "arguments": [{"uri": 5}]}
        )
        assert "not what qcn-lsp listed" in forged["error"]["message"]
    finally:
        server.close()


async def test_command_argument_errors(project: Path, tmp_path: Path) -> None:
    async with lsp_session(profile="visual_studio_code", workspace=project) as (client, result):
        provider = result.capabilities.execute_command_provider
        assert provider is not None
        assert {"qcn.refactor", "qcn.editFiles", "qcn.rewrite"} <= set(provider.commands)
        bad_calls: list[tuple[str, list[Any]]] = [
            ("qcn.noSuchCommand", []),
            ("qcn.refactor", []),
            ("qcn.refactor", ["rename"]),
            ("qcn.refactor", [{"instruction": ""}]),
            ("qcn.refactor", [{"instruction": "x", "uri": 3, "position": {}}]),
            ("qcn.refactor", [{"instruction": "x", "symbol": "add"}]),  # no model configured
            ("qcn.editFiles", [{"instruction": "x", "uris": "file:///a"}]),
            ("qcn.editFiles", [{"instruction": "x", "uris": ["untitled:1"]}]),
            ("qcn.editFiles", [{"instruction": "x", "uris": [(tmp_path / "out.py").as_uri()]}]),
            ("qcn.rewrite", [{"uri": "file:///a.py", "instruction": "x", "range": [1, 2]}]),
        ]
        for command, arguments in bad_calls:
            with pytest.raises(JsonRpcException):
                await client.workspace_execute_command_async(
                    types.ExecuteCommandParams(command=command, arguments=arguments)
                )
