"""Faults: bad model files, too little memory, broken caches, a workspace changing under the
server, a stalled backend. Each must give a clear message saying what to do, leave the
features that need no model working, crash nothing, serve nothing stale and lose nothing.

The real server and engine (the tiny test model, and generated models of unusual shapes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import resource
import signal
import sqlite3
from pathlib import Path
from typing import Any

import gguf
import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from engine.testing import write_test_model
from engine.testing.presets import PRESETS
from tests.lsp.helpers import (
    RawLspProcess,
    inline_params,
    lsp_session,
    open_file,
    status,
    until_ready,
    until_status,
)

FAST = {"completion": {"maxTokens": 4, "debounceMs": 0, "timeoutMs": 120_000}}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """app/main.py uses helper() from app/util.py; app/other.py is unrelated."""
    root = tmp_path / "project"
    (root / "app").mkdir(parents=True)
    (root / "app" / "util.py").write_text("def helper(value):\n    return value * 2\n")
    (root / "app" / "other.py").write_text("def unrelated():\n    return 0\n")
    (root / "app" / "main.py").write_text(
        "from app.util import helper\n\n\ndef run(x):\n    return helper(x)\n\n\nresult = "
    )
    return root


def settings(model: Path | str, cache: Path, **extra: Any) -> dict[str, Any]:
    return {
        "model": {"path": str(model), "contextLength": 4096},
        "cache": {"dir": str(cache)},
        **FAST,
        **extra,
    }


def end_of(path: Path) -> types.Position:
    lines = path.read_text().split("\n")
    return types.Position(line=len(lines) - 1, character=len(lines[-1]))


async def invoke(client: LanguageClient, uri: str, position: types.Position) -> Any:
    return await client.text_document_inline_completion_async(inline_params(uri, position))


async def assert_non_model_features_work(client: LanguageClient, uri: str) -> None:
    """Code action listing, qcn.status and the index need no model."""
    listed = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(
                start=types.Position(line=0, character=0), end=types.Position(line=1, character=0)
            ),
            context=types.CodeActionContext(diagnostics=[]),
        )
    )
    assert listed, "no code action listed"
    state = await until_status(client, lambda s: s["index"]["state"].startswith("ready"))
    assert state["index"]["files"] >= 3


def change_settings(client: LanguageClient, changed: dict[str, Any]) -> None:
    """As VS Code does: the new values in workspace/configuration, then the hint."""
    client.set_configuration({"qcn": changed})
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))


def wrong_architecture(path: Path) -> Path:
    writer = gguf.GGUFWriter(path, "nosucharch")
    writer.add_block_count(1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize(
    ("kind", "says", "what_to_do"),
    [
        ("missing", "model file not found", "check model.path"),
        ("truncated", "is truncated", "Re-download"),
        ("truncated header", "truncated", "Re-download"),
        ("not a GGUF", "not a GGUF file", "Re-download or re-convert"),
        (
            "wrong architecture",
            "does not support the model architecture 'nosucharch'",
            "Use a Qwen3-Coder-Next GGUF",
        ),
    ],
)
async def test_a_bad_model_file_is_explained_and_the_rest_works(
    tiny_model: Path, project: Path, tmp_path: Path, kind: str, says: str, what_to_do: str
) -> None:
    model = tmp_path / "model.gguf"
    if kind.startswith("truncated"):
        keep = 0.9 if kind == "truncated" else 0.1  # in the tensor data / in the header
        model.write_bytes(tiny_model.read_bytes()[: int(tiny_model.stat().st_size * keep)])
    elif kind == "not a GGUF":
        model.write_text("<html>404 Not Found</html>\n")
    elif kind == "wrong architecture":
        wrong_architecture(model)
    async with lsp_session(
        workspace=project, initialization_options=settings(model, tmp_path / "cache")
    ) as (client, _):
        uri = open_file(client, project / "app" / "main.py")
        state = await until_status(
            client,
            lambda s: (
                s["engine"]["state"] not in ("model still loading",)
                and "not started" not in s["engine"]["state"]
            ),
        )
        assert says in state["engine"]["state"] and what_to_do in state["engine"]["state"], state
        assert any(says in m.message for m in client.messages), client.messages
        with pytest.raises(JsonRpcException, match=re.escape(says)):
            await invoke(client, uri, end_of(project / "app" / "main.py"))
        automatic = await client.text_document_inline_completion_async(
            inline_params(uri, end_of(project / "app" / "main.py"), invoked=False)
        )
        assert automatic is None or not automatic.items  # quiet while typing
        await assert_non_model_features_work(client, uri)


async def test_a_context_too_large_for_memory_is_refused_with_one_that_fits(
    project: Path, tmp_path: Path
) -> None:
    """A model whose attention cache needs 128 KiB a token: 262,144 tokens would need 36 GiB
    (more than this machine has); the message names a length that fits, which then loads."""
    wide = dataclasses.replace(
        PRESETS["tiny"], name="wide-kv", head_count=128, head_count_kv=128, head_dim=256
    )
    model = write_test_model(tmp_path / "wide.gguf", wide)
    options = settings(model, tmp_path / "cache")
    options["model"]["contextLength"] = 262144
    async with lsp_session(workspace=project, initialization_options=options) as (client, _):
        uri = open_file(client, project / "app" / "main.py")
        state = await until_status(client, lambda s: "failed" in s["engine"]["state"])
        message = state["engine"]["state"]
        assert "GiB" in message and "set model.contextLength to" in message, message
        await assert_non_model_features_work(client, uri)
        change_settings(client, {"model": {"contextLength": 2048}})
        await until_status(client, lambda s: s["settings"]["model.contextLength"] == 2048)
        await until_ready(client)
        assert isinstance(
            await invoke(client, uri, end_of(project / "app" / "main.py")),
            types.InlineCompletionList,
        )


async def test_an_unwritable_cache_turns_caching_off_and_nothing_else(
    tiny_model: Path, project: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    async with lsp_session(
        profile="neovim",  # no workspace/configuration pull: initializationOptions rule
        workspace=project,
        initialization_options=settings(tiny_model, blocker / "cache"),
    ) as (client, _):
        uri = open_file(client, project / "app" / "main.py")
        await until_ready(client)
        await assert_non_model_features_work(client, uri)
        assert isinstance(
            await invoke(client, uri, end_of(project / "app" / "main.py")),
            types.InlineCompletionList,
        )
        warnings = [m.message for m in client.messages if "not writable" in m.message]
        assert warnings and all("set cache.dir" in w for w in warnings), client.messages
        assert "disk" not in (await status(client))["engine"]["stats"]


def corrupt(cache: Path) -> None:
    """Garbage over the index database, garbage and truncated persisted states."""
    (cache / "index" / "cache.db").write_bytes(b"\x00garbage\xff" * 1000)
    values = sorted((cache / "state").rglob("*.val"))
    assert values, "no persisted state to corrupt"
    for k, value in enumerate(values):
        data = value.read_bytes()
        value.write_bytes(data[: len(data) // 3] if k % 2 else b"\xff" * len(data))
    with sqlite3.connect(cache / "state" / "cache.db") as database:  # and a bad index row
        database.execute("UPDATE Cache SET value = X'80049502' WHERE key LIKE 'index-%'")


async def complete_once(model: Path, project: Path, cache: Path) -> tuple[str, dict[str, Any]]:
    async with lsp_session(workspace=project, initialization_options=settings(model, cache)) as (
        client,
        _,
    ):
        path = project / "app" / "main.py"
        uri = open_file(client, path)
        await until_ready(client)
        await until_status(client, lambda s: s["index"]["state"].startswith("ready"))
        answer = await invoke(client, uri, end_of(path))
        assert isinstance(answer, types.InlineCompletionList)
        state = await status(client)
        return (answer.items[0].insert_text if answer.items else ""), state


async def test_corrupt_caches_are_set_aside_and_never_served(
    tiny_model: Path, project: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    path = project / "app" / "main.py"
    # A file long enough for its state to be persisted (1,024 tokens at least).
    path.write_text(path.read_text() + "".join(f"# line {n}\n" for n in range(400)) + "end = ")
    first_text, first = await complete_once(tiny_model, project, cache)
    corrupt(cache)
    again_text, again = await complete_once(tiny_model, project, cache)
    assert again_text == first_text
    assert again["lastRequest"]["promptDigest"] == first["lastRequest"]["promptDigest"]
    assert again["lastRequest"]["restoreKind"] != "disk", again["lastRequest"]
    assert again["index"]["files"] == first["index"]["files"]
    assert again["index"]["definitions"] == first["index"]["definitions"]
    assert any(cache.glob("index.corrupt-*")), "the corrupt index database was not set aside"


def limit_file_size() -> None:
    # A full disk: writes past 64 KiB fail (EFBIG, SQLite's "disk is full"), no signal.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))


def test_a_full_disk_costs_the_caches_only(tiny_model: Path, project: Path, tmp_path: Path) -> None:
    path = project / "app" / "main.py"
    path.write_text(path.read_text() + "".join(f"# line {n}\n" for n in range(400)) + "end = ")
    for n in range(60):  # enough tags for the index cache to outgrow 64 KiB
        (project / "app" / f"mod{n}.py").write_text(
            "".join(f"def function_{n}_{k}(value):\n    return value\n\n" for k in range(40))
        )
    server = RawLspProcess(preexec_fn=limit_file_size)
    server.request(
        "initialize",
        {
            "processId": None,
            "rootUri": project.as_uri(),
            "capabilities": {},
            "initializationOptions": settings(tiny_model, tmp_path / "cache"),
        },
    )
    server.send({"method": "initialized", "params": {}})
    server.open_document(path.as_uri(), path.read_text())
    try:
        for _ in range(600):
            state = server.request("workspace/executeCommand", {"command": "qcn.status"})["result"]
            if state["engine"]["state"] == "ready" and state["index"]["state"].startswith("ready"):
                break
            asyncio.run(asyncio.sleep(0.05))
        assert state["index"]["files"] >= 60, state["index"]
        position = end_of(path)
        for _ in range(2):
            answer = server.request(
                "textDocument/inlineCompletion",
                {
                    "textDocument": {"uri": path.as_uri()},
                    "position": {"line": position.line, "character": position.character},
                    "context": {"triggerKind": 1},
                },
            )
            assert "result" in answer, answer
        messages = [
            n["params"]["message"]
            for n in server.notifications
            if n["method"] == "window/showMessage"
        ]
        assert any("index cache" in m and "without it" in m for m in messages), messages
    finally:
        server.close()


async def test_files_deleted_or_renamed_under_the_server_are_not_served(
    tiny_model: Path, project: Path, tmp_path: Path
) -> None:
    options = settings(tiny_model, tmp_path / "cache", context={"budgetTokens": 1024})
    async with lsp_session(workspace=project, initialization_options=options) as (client, _):
        path = project / "app" / "main.py"
        uri = open_file(client, path)
        await until_ready(client)
        await until_status(client, lambda s: s["index"]["state"].startswith("ready"))
        await invoke(client, uri, end_of(path))
        assert "app/util.py" in (await status(client))["lastContext"]
        # Deleted behind the server's back (no file event): its content is not served again.
        # (Each request at another spot: one at the same spot and text gets the same run.)
        (project / "app" / "util.py").unlink()
        await invoke(client, uri, types.Position(line=4, character=20))
        assert "app/util.py" not in (await status(client))["lastContext"]
        # Renamed with the client's file event: served under its new name only.
        (project / "app" / "util.py").write_text("def helper(value):\n    return value * 3\n")
        client.workspace_did_create_files(
            types.CreateFilesParams(
                files=[types.FileCreate(uri=(project / "app" / "util.py").as_uri())]
            )
        )
        (project / "app" / "util.py").rename(project / "app" / "tools.py")
        client.workspace_did_rename_files(
            types.RenameFilesParams(
                files=[
                    types.FileRename(
                        old_uri=(project / "app" / "util.py").as_uri(),
                        new_uri=(project / "app" / "tools.py").as_uri(),
                    )
                ]
            )
        )
        await until_status(client, lambda s: s["index"]["pendingUpdates"] == 0)
        await invoke(client, uri, types.Position(line=3, character=10))
        assert "app/util.py" not in (await status(client))["lastContext"]
        state = await status(client)
        assert state["engine"]["state"] == "ready"


async def test_workspace_folders_added_and_removed_rebuild_the_index(
    tiny_model: Path, project: Path, tmp_path: Path
) -> None:
    second = tmp_path / "second"
    second.mkdir()
    for n in range(4):
        (second / f"extra{n}.py").write_text(f"def extra_{n}():\n    return {n}\n")
    async with lsp_session(
        workspace=project, initialization_options=settings(tiny_model, tmp_path / "cache")
    ) as (client, _):
        first = await until_status(client, lambda s: s["index"]["state"].startswith("ready"))
        files = first["index"]["files"]
        added = types.WorkspaceFolder(uri=second.as_uri(), name="second")
        client.workspace_did_change_workspace_folders(
            types.DidChangeWorkspaceFoldersParams(
                event=types.WorkspaceFoldersChangeEvent(added=[added], removed=[])
            )
        )
        await until_status(
            client,
            lambda s: s["index"]["state"].startswith("ready") and s["index"]["files"] == files + 4,
        )
        removed = types.WorkspaceFolder(uri=project.as_uri(), name=project.name)
        client.workspace_did_change_workspace_folders(
            types.DidChangeWorkspaceFoldersParams(
                event=types.WorkspaceFoldersChangeEvent(added=[], removed=[removed])
            )
        )
        await until_status(
            client, lambda s: s["index"]["state"].startswith("ready") and s["index"]["files"] == 4
        )


async def test_a_stalled_backend_times_out_clearly_and_recovers(
    tiny_model: Path, project: Path, tmp_path: Path
) -> None:
    """A prefill far longer than completion.timeoutMs: the request is answered in time with
    why, other requests meanwhile; once the document is left its run is stopped, and the next
    completion works."""
    huge = project / "app" / "huge.py"
    huge.write_text(
        "".join(f"value_{n} = compute({n}, other=[{n}, {n + 1}])\n" for n in range(12000))
    )
    options = settings(
        tiny_model, tmp_path / "cache", completion={"timeoutMs": 300, "debounceMs": 0}
    )
    options["model"]["contextLength"] = 131072
    async with lsp_session(workspace=project, initialization_options=options) as (client, _):
        uri = open_file(client, huge)
        small = open_file(client, project / "app" / "main.py")
        await until_ready(client)
        stalled = asyncio.ensure_future(invoke(client, uri, end_of(huge)))
        await asyncio.sleep(0.1)
        await assert_non_model_features_work(client, small)  # answered meanwhile
        with pytest.raises(JsonRpcException, match=r"reading the prompt.*ask again"):
            await stalled
        change_settings(client, {"completion": {"timeoutMs": 120000}})
        await until_status(client, lambda s: s["settings"]["completion.timeoutMs"] == 120000)
        client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
        answer = await invoke(client, small, end_of(project / "app" / "main.py"))
        assert isinstance(answer, types.InlineCompletionList)
        stats = (await status(client))["engine"]["stats"]["interactive"]
        assert stats["cancelled"] >= 1, stats  # the long prefill stopped, not finished
