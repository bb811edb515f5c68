"""Code actions and edit commands with the real engine on the tiny random-weight model.

Random weights write noise, so these tests check the protocol shape and the validation
outcome (an edit that passed the checks, or a stated reason), never the generated text.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from tests.lsp.helpers import lsp_session, once_indexed, open_file

SOURCE = "def add(a, b):\n    return a +\n\nprint(add(1, 2))\n"
# What the services say while the model is loading (start-up never blocks).
NOT_READY_YET = ("loading", "not started", "not ready")
FAST_EDITS = {"edits": {"maxTokens": 24, "maxToolRounds": 1}}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    for name in ("calc.py", "one.py", "two.py", "three.py"):
        (root / name).write_text(SOURCE)
    return root


def options(tiny_model: Path) -> dict[str, Any]:
    return {"model": {"path": str(tiny_model)}, **FAST_EDITS}


async def until_loaded(call: Any) -> Any:
    """Retry while the server says the model is still loading (start-up never blocks)."""
    for _ in range(120):
        try:
            return await call()
        except JsonRpcException as exc:
            if not any(word in str(exc) for word in NOT_READY_YET):
                raise
        await asyncio.sleep(0.5)
    raise AssertionError("the model never finished loading")


def edit_files_progress(reports: list[Any]) -> bool:
    return bool(reports) and getattr(reports[0], "title", None) == "qcn: edit files"


def fix_params(uri: str) -> types.CodeActionParams:
    where = types.Range(
        start=types.Position(line=1, character=11), end=types.Position(line=1, character=14)
    )
    return types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=where,
        context=types.CodeActionContext(
            diagnostics=[types.Diagnostic(range=where, message="expected expression")]
        ),
    )


async def listed_fix(client: Any, path: Path) -> tuple[str, types.CodeAction]:
    """Open `path` and list the quick fix for the diagnostic at its incomplete line."""
    uri = open_file(client, path)
    actions = await client.text_document_code_action_async(fix_params(uri))
    fix = (actions or [])[0]
    assert isinstance(fix, types.CodeAction)
    return uri, fix


async def test_resolve_offers_a_checked_edit_or_says_why(project: Path, tiny_model: Path) -> None:
    async with lsp_session(
        profile="visual_studio_code", workspace=project, initialization_options=options(tiny_model)
    ) as (client, _):
        uri, fix = await listed_fix(client, project / "calc.py")
        assert fix.edit is None
        resolved = await until_loaded(lambda: client.code_action_resolve_async(fix))
        if resolved.edit is None:
            assert resolved.disabled is not None and resolved.disabled.reason
            return
        [doc_edit] = resolved.edit.document_changes or []
        assert isinstance(doc_edit, types.TextDocumentEdit)
        assert doc_edit.text_document.uri == uri and doc_edit.text_document.version == 1
        assert resolved.edit.change_annotations
        for text_edit in doc_edit.edits:
            assert 1 <= text_edit.range.start.line <= text_edit.range.end.line <= 2


async def test_neovim_gets_the_changes_shape_or_an_error(project: Path, tiny_model: Path) -> None:
    async with lsp_session(
        profile="neovim", workspace=project, initialization_options=options(tiny_model)
    ) as (client, _):
        uri, fix = await listed_fix(client, project / "calc.py")
        try:
            resolved = await until_loaded(lambda: client.code_action_resolve_async(fix))
        except JsonRpcException as exc:
            assert str(exc)  # the reason, since Neovim cannot show disabled actions
            return
        assert resolved.edit is not None and resolved.edit.document_changes is None
        assert list(resolved.edit.changes or {}) == [uri]


async def test_edit_files_reports_progress_and_can_be_cancelled(
    project: Path, tiny_model: Path
) -> None:
    async with lsp_session(
        profile="visual_studio_code", workspace=project, initialization_options=options(tiny_model)
    ) as (client, _):
        applied: list[types.ApplyWorkspaceEditParams] = []

        @client.feature(types.WORKSPACE_APPLY_EDIT)
        def apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
            applied.append(params)
            return types.ApplyWorkspaceEditResult(applied=False, failure_reason="test")

        uris = [(project / name).as_uri() for name in ("one.py", "two.py", "three.py")]
        command = types.ExecuteCommandParams(
            command="qcn.editFiles", arguments=[{"instruction": "add type hints", "uris": uris}]
        )
        # One full run: progress says "file k of n" for every file and ends.
        result = await until_loaded(lambda: client.workspace_execute_command_async(command))
        assert result["cancelled"] is False
        # (The services' own loading / indexing progress may be there too.)
        [reports] = [r for r in client.progress_reports.values() if edit_files_progress(r)]
        messages = [getattr(r, "message", None) for r in reports]
        assert [m for m in messages if m and m.startswith("file ")][:3] == [
            "file 1 of 3: one.py",
            "file 2 of 3: two.py",
            "file 3 of 3: three.py",
        ]
        assert isinstance(reports[-1], types.WorkDoneProgressEnd)
        assert len(applied) == int(bool(result["files"]))
        if not result["files"]:
            # Nothing to apply: the reason is in the result (the plugin shows it) and the LSP
            # log, never also in a window/showMessage.
            reason = result["reason"]
            assert reason and not [m for m in client.messages if reason in m.message]
            assert any(reason in m.message for m in client.log_messages)

        # A second run, cancelled from the client as soon as its progress begins.
        seen = set(client.progress_reports)
        task = asyncio.ensure_future(client.workspace_execute_command_async(command))
        token = None
        for _ in range(400):
            token = next(
                (
                    t
                    for t, r in client.progress_reports.items()
                    if t not in seen and edit_files_progress(r)
                ),
                None,
            )
            if token is not None:
                break
            await asyncio.sleep(0.01)
        assert token is not None
        client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=token))
        result = await asyncio.wait_for(task, 60)
        assert result == {"applied": False, "cancelled": True, "files": []}


async def test_refactor_scopes_by_the_symbol_graph_with_progress(
    project: Path, tiny_model: Path
) -> None:
    (project / "other.py").write_text("def unrelated():\n    return 0\n")
    async with lsp_session(
        profile="visual_studio_code", workspace=project, initialization_options=options(tiny_model)
    ) as (client, _):

        @client.feature(types.WORKSPACE_APPLY_EDIT)
        def apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
            return types.ApplyWorkspaceEditResult(applied=False, failure_reason="test")

        command = types.ExecuteCommandParams(
            command="qcn.refactor",
            arguments=[{"instruction": "rename add to plus", "symbol": "add"}],
        )
        result = await once_indexed(
            lambda: until_loaded(lambda: client.workspace_execute_command_async(command))
        )
        assert result["cancelled"] is False
        [reports] = [
            r
            for r in client.progress_reports.values()
            if getattr(r[0], "title", None) == "qcn: refactor add"
        ]
        files = [m for r in reports if (m := getattr(r, "message", None)) and m.startswith("file ")]
        # Every file that defines or uses `add`, and nothing else.
        assert len(files) == 4 and all(
            m.startswith(f"file {k + 1} of 4: ") for k, m in enumerate(files)
        )
        assert not any("other.py" in m for m in files)
        assert isinstance(reports[-1], types.WorkDoneProgressEnd)
