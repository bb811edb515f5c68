"""Document and file events reach the workspace index: the real server, no model.

The index is observed through `qcn.status` (`index.files`, `index.definitions`). Updates are
applied in arrival order on one worker, so an expected total that includes a later event also
proves what the earlier ones did (or did not) do.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.lsp.helpers import change, lsp_session, open_document, status

FILES = {
    "a.py": "def alpha():\n    return 1\n",
    "b.py": "def beta():\n    return 2\n\n\ndef gamma():\n    return 3\n",
    "pkg/c.py": "def delta():\n    return 4\n",
    "pkg/d.py": "class Epsilon:\n    pass\n",
}


def make_workspace(tmp_path: Path, files: dict[str, str] = FILES) -> Path:
    root = tmp_path / "ws"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def settings(tmp_path: Path) -> dict[str, Any]:
    # The cache lives outside the workspace, or it would be indexed too.
    return {"cache": {"dir": str(tmp_path / "cache")}}


async def index_counts(client: LanguageClient, files: int, definitions: int) -> dict[str, Any]:
    """The index status once it holds `files` files and `definitions` definitions."""
    index: dict[str, Any] = {}
    for _ in range(300):
        index = (await status(client))["index"]
        if index.get("files") == files and index.get("definitions") == definitions:
            return index
        await asyncio.sleep(0.05)
    raise AssertionError(f"index never reached {files} files / {definitions} defs: {index}")


def file_operations(result: types.InitializeResult) -> types.FileOperationOptions:
    workspace = result.capabilities.workspace
    assert workspace is not None and workspace.file_operations is not None
    return workspace.file_operations


def at(line: int, character: int) -> types.Position:
    return types.Position(line=line, character=character)


async def test_typed_definition_reaches_the_index(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    async with lsp_session(workspace=root, initialization_options=settings(tmp_path)) as (
        client,
        _,
    ):
        await index_counts(client, files=4, definitions=5)
        buffer = root / "pkg" / "c.py"
        open_document(client, buffer.as_uri(), FILES["pkg/c.py"])
        # Typed keystroke by keystroke at the end of the buffer, as an editor sends it.
        typed = "\n\ndef typed_here(x):\n    return x\n"
        line, column = 2, 0
        for version, char in enumerate(typed, start=2):
            change(client, buffer.as_uri(), version, at(line, column), at(line, column), char)
            line, column = (line + 1, 0) if char == "\n" else (line, column + 1)
        await index_counts(client, files=4, definitions=6)

        # Ranges replaced: `def delta` renamed in place, then deleted, then one more added.
        change(client, buffer.as_uri(), 100, at(0, 4), at(0, 9), "renamed")
        change(client, buffer.as_uri(), 101, at(0, 0), at(4, 0), "")
        await index_counts(client, files=4, definitions=5)
        change(client, buffer.as_uri(), 102, at(0, 0), at(0, 0), "def extra():\n    pass\n\n\n")
        await index_counts(client, files=4, definitions=6)

        # Saved and closed without writing the file: the disk version counts again.
        client.text_document_did_save(
            types.DidSaveTextDocumentParams(
                text_document=types.TextDocumentIdentifier(uri=buffer.as_uri())
            )
        )
        client.text_document_did_close(
            types.DidCloseTextDocumentParams(
                text_document=types.TextDocumentIdentifier(uri=buffer.as_uri())
            )
        )
        await index_counts(client, files=4, definitions=5)
        # An unsaved new buffer inside the workspace counts; one outside it, a secrets file
        # and a non-file URI do not (the last event proves the others were handled first).
        open_document(client, (tmp_path / "outside.py").as_uri(), "def outside():\n    pass\n")
        open_document(client, (root / ".env").as_uri(), "def hidden():\n    pass\n")
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri="untitled:Untitled-1", language_id="python", version=1, text="def u(): 0"
                )
            )
        )
        open_document(client, (root / "new.py").as_uri(), "def fresh():\n    pass\n")
        await index_counts(client, files=5, definitions=6)


async def test_buffers_opened_while_indexing_are_kept(tmp_path: Path) -> None:
    # Enough files that the build is most likely still running when the buffer opens; the
    # result must be the same either way.
    filler = {f"filler/f{n}.py": f"def filler_{n}():\n    return {n}\n" for n in range(400)}
    root = make_workspace(tmp_path, {**FILES, **filler})
    async with lsp_session(workspace=root, initialization_options=settings(tmp_path)) as (
        client,
        _,
    ):
        open_document(
            client, (root / "a.py").as_uri(), "def one():\n    pass\n\n\ndef two():\n    pass\n"
        )
        open_document(client, (root / "unsaved.py").as_uri(), "def three():\n    pass\n")
        index = await index_counts(client, files=405, definitions=407)
        assert index["state"].startswith("ready")


async def test_file_operations_delete_and_rename(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    async with lsp_session(workspace=root, initialization_options=settings(tmp_path)) as (
        client,
        result,
    ):
        operations = file_operations(result)
        for filters in (operations.did_create, operations.did_rename, operations.did_delete):
            assert filters is not None
            assert filters.filters[0].pattern.glob == "**/*"
        await index_counts(client, files=4, definitions=5)

        # b.py (2 definitions) renamed: deleting its old name afterwards changes nothing,
        # deleting its new name removes both definitions.
        (root / "sub").mkdir()
        (root / "b.py").rename(root / "sub" / "b2.py")
        client.workspace_did_rename_files(
            types.RenameFilesParams(
                files=[
                    types.FileRename(
                        old_uri=(root / "b.py").as_uri(), new_uri=(root / "sub/b2.py").as_uri()
                    )
                ]
            )
        )
        client.workspace_did_delete_files(
            types.DeleteFilesParams(files=[types.FileDelete(uri=(root / "b.py").as_uri())])
        )
        (root / "e.py").write_text("def created():\n    pass\n")
        client.workspace_did_create_files(
            types.CreateFilesParams(files=[types.FileCreate(uri=(root / "e.py").as_uri())])
        )
        await index_counts(client, files=5, definitions=6)
        (root / "sub" / "b2.py").unlink()
        client.workspace_did_delete_files(
            types.DeleteFilesParams(files=[types.FileDelete(uri=(root / "sub/b2.py").as_uri())])
        )
        await index_counts(client, files=4, definitions=4)

        # A folder renamed, then deleted: every file under it follows.
        (root / "pkg").rename(root / "lib")
        client.workspace_did_rename_files(
            types.RenameFilesParams(
                files=[
                    types.FileRename(
                        old_uri=(root / "pkg").as_uri(), new_uri=(root / "lib").as_uri()
                    )
                ]
            )
        )
        client.workspace_did_delete_files(
            types.DeleteFilesParams(files=[types.FileDelete(uri=(root / "pkg").as_uri())])
        )
        (root / "f.py").write_text("def f():\n    pass\n")
        client.workspace_did_create_files(
            types.CreateFilesParams(files=[types.FileCreate(uri=(root / "f.py").as_uri())])
        )
        await index_counts(client, files=5, definitions=5)
        for name in ("c.py", "d.py"):
            (root / "lib" / name).unlink()
        (root / "lib").rmdir()
        client.workspace_did_delete_files(
            types.DeleteFilesParams(files=[types.FileDelete(uri=(root / "lib").as_uri())])
        )
        await index_counts(client, files=3, definitions=3)


async def test_watched_files(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    async with lsp_session(workspace=root, initialization_options=settings(tmp_path)) as (
        client,
        _,
    ):
        # The VS Code capability set allows dynamic registration: the server asks for events.
        registered: asyncio.Future[types.RegistrationParams] = asyncio.Future()

        @client.feature(types.CLIENT_REGISTER_CAPABILITY)
        def register(_client: LanguageClient, params: types.RegistrationParams) -> None:
            if not registered.done():
                registered.set_result(params)

        params = await asyncio.wait_for(registered, 20)
        (registration,) = params.registrations
        assert registration.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES
        await index_counts(client, files=4, definitions=5)

        (root / "a.py").unlink()
        (root / "pkg" / "c.py").write_text("def delta():\n    pass\n\n\ndef more():\n    pass\n")
        (root / "new.py").write_text("def new():\n    pass\n")
        client.workspace_did_change_watched_files(
            types.DidChangeWatchedFilesParams(
                changes=[
                    types.FileEvent(
                        uri=(root / "a.py").as_uri(), type=types.FileChangeType.Deleted
                    ),
                    types.FileEvent(
                        uri=(root / "pkg/c.py").as_uri(), type=types.FileChangeType.Changed
                    ),
                    types.FileEvent(
                        uri=(root / "new.py").as_uri(), type=types.FileChangeType.Created
                    ),
                ]
            )
        )
        await index_counts(client, files=4, definitions=6)


async def test_no_watcher_registration_without_dynamic_registration(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    async with lsp_session(
        profile="neovim", workspace=root, initialization_options=settings(tmp_path)
    ) as (client, result):
        requests: list[types.RegistrationParams] = []
        client.feature(types.CLIENT_REGISTER_CAPABILITY)(lambda _c, params: requests.append(params))
        # Neovim's set has no fileOperations: nothing advertised; watched-file notifications
        # (sent by clients with static watchers) are still handled.
        assert file_operations(result).did_create is None
        await index_counts(client, files=4, definitions=5)
        (root / "a.py").unlink()
        client.workspace_did_change_watched_files(
            types.DidChangeWatchedFilesParams(
                changes=[
                    types.FileEvent(uri=(root / "a.py").as_uri(), type=types.FileChangeType.Deleted)
                ]
            )
        )
        await index_counts(client, files=3, definitions=4)
        assert requests == []
