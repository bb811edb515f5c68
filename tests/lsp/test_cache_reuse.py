"""The completion lane's state is paid for once: code actions and a cold start do not spend it.

The real server and engine on the tiny model with Qwen's vocabulary, so token counts are the
real model's. What is checked is what each completion had to prefill (`qcn.status`
lastRequest), never the generated text.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from tests.lsp.helpers import (
    inline_params,
    lsp_session,
    open_file,
    status,
    until_ready,
    until_status,
)

CHECKPOINT_INTERVAL = 64


def options(model: Path, cache: Path, **completion: Any) -> dict[str, Any]:
    return {
        "model": {"path": str(model), "contextLength": 4096},
        "engine": {"checkpointInterval": CHECKPOINT_INTERVAL},
        "completion": {"maxTokens": 4, "debounceMs": 0, "timeoutMs": 120_000, **completion},
        "edits": {"maxTokens": 16, "maxToolRounds": 1},
        "cache": {"dir": str(cache)},
    }


def source(lines: int) -> str:
    """A module of `lines` small functions, then an open line to complete."""
    body = "".join(
        f"def step_{n}(value):\n    return value * {n} + {n % 7}\n\n\n" for n in range(lines)
    )
    return body + "result = "


def end_of(text: str) -> types.Position:
    lines = text.split("\n")
    return types.Position(line=len(lines) - 1, character=len(lines[-1]))


def reopen(client: LanguageClient, path: Path) -> str:
    """Close and open `path` again: a request at the same spot is then a new model run (an
    open document's completion at one state is made once and then reused)."""
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=path.as_uri())
        )
    )
    return open_file(client, path)


async def complete(client: LanguageClient, uri: str, position: types.Position) -> dict[str, Any]:
    """An explicit inline completion; the engine's report of it."""
    before = (await status(client))["engine"]["stats"]["interactive"]["requests"]
    answer = await client.text_document_inline_completion_async(inline_params(uri, position))
    assert isinstance(answer, types.InlineCompletionList)
    state = await status(client)
    assert state["engine"]["stats"]["interactive"]["requests"] == before + 1, "no model run"
    return state["lastRequest"]


def lane_requests(state: dict[str, Any]) -> tuple[int, int]:
    stats = state["engine"]["stats"]
    return stats["interactive"]["requests"], stats.get("background", {}).get("requests", 0)


async def test_a_code_action_leaves_the_completion_state_as_it_found_it(
    qwen_tiny_model: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    text = source(60)
    (project / "steps.py").write_text(text)
    cursor = end_of(text)
    async with lsp_session(
        workspace=project, initialization_options=options(qwen_tiny_model, tmp_path / "cache")
    ) as (client, _):
        uri = open_file(client, project / "steps.py")
        await until_ready(client)
        first = await complete(client, uri, cursor)
        assert first["prefilledTokens"] > 1000, first  # the cold prefill of the whole file

        selection = types.Range(
            start=types.Position(line=4, character=0), end=types.Position(line=6, character=0)
        )
        [rewrite] = (
            await client.text_document_code_action_async(
                types.CodeActionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    range=selection,
                    context=types.CodeActionContext(diagnostics=[]),
                )
            )
            or []
        )
        assert isinstance(rewrite, types.CodeAction)
        before = lane_requests(await status(client))
        resolved = await client.code_action_resolve_async(rewrite)
        assert resolved.edit is not None or resolved.disabled is not None
        after = lane_requests(await status(client))

        again = await complete(client, reopen(client, project / "steps.py"), cursor)
        assert again["promptTokens"] == first["promptTokens"]
        # Resumed from the checkpoint next to the cursor, as after a keystroke; not a re-read of
        # the file from the last boundary.
        assert again["restoreKind"] in ("partial", "append"), again
        assert again["prefilledTokens"] <= 3 * CHECKPOINT_INTERVAL, again
        assert after == (before[0], before[1] + 1)  # the code action ran on the background lane


async def test_a_completion_during_indexing_waits_and_the_cold_prefill_is_paid_once(
    qwen_tiny_model: Path, tmp_path: Path
) -> None:
    project = tmp_path / "big"
    # Enough files that indexing is still running when the first completion arrives.
    for n in range(5000):
        folder = project / f"pkg{n // 100}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"mod{n}.py").write_text(
            "".join(f"def helper_{n}_{k}(value):\n    return value + {k}\n\n\n" for k in range(6))
        )
    text = "from pkg0.mod1 import helper_1_0\n\n\n" + source(20)
    (project / "main.py").write_text(text)
    cursor = end_of(text)
    settings = options(qwen_tiny_model, tmp_path / "cache", indexWaitMs=120_000)
    async with lsp_session(workspace=project, initialization_options=settings) as (client, _):
        uri = open_file(client, project / "main.py")
        first_request = asyncio.ensure_future(
            client.text_document_inline_completion_async(inline_params(uri, cursor))
        )
        await asyncio.sleep(0.5)
        assert (await status(client))["index"]["state"] in ("not started", "indexing")
        try:
            await first_request
        except JsonRpcException as exc:
            raise AssertionError(f"the first completion failed: {exc}") from exc
        first = (await status(client))["lastRequest"]
        await until_status(client, lambda state: state["index"]["state"].startswith("ready"))
        second = await complete(client, reopen(client, project / "main.py"), cursor)
        # Both prompts carry the repository context: the second re-reads only near the cursor.
        assert second["promptTokens"] == first["promptTokens"] > first["prefilledTokens"] / 2
        assert second["reusedTokens"] >= second["promptTokens"] - 3 * CHECKPOINT_INTERVAL, second


def line_end(text: str, after: str) -> types.Position:
    """The end of the line that starts with `after`."""
    lines = text.split("\n")
    row = next(n for n, line in enumerate(lines) if line.startswith(after))
    return types.Position(line=row, character=len(lines[row]))


async def test_going_back_to_a_spot_below_was_warmed_while_the_user_looked_elsewhere(
    tiny_model: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    text = source(40)
    (project / "steps.py").write_text(text)
    upper = line_end(text, "    return value * 3 ")
    lower = line_end(text, "    return value * 30 ")
    async with lsp_session(
        workspace=project, initialization_options=options(tiny_model, tmp_path / "cache")
    ) as (client, _):
        uri = open_file(client, project / "steps.py")
        await until_ready(client)
        await complete(client, uri, lower)
        await complete(client, uri, upper)
        # The completion up there re-read its line; the state of the lower spot went with it.
        # The server warms the lower spot's line start once the completion is done (the
        # warm-up after the first completion, for accepting it, is far smaller).
        state = await until_status(
            client,
            lambda s: s["lastWarmup"] is not None and s["lastWarmup"]["prefilledTokens"] > 100,
        )
        warmup = state["lastWarmup"]
        assert warmup["warmup"] and not warmup["cancelled"], warmup
        back = await complete(client, uri, lower)
        assert back["warmupTokens"] == warmup["prefilledTokens"], back
        # Only the line and the text after the cursor, not the 27 lines in between.
        assert back["prefilledTokens"] < warmup["prefilledTokens"] / 2, back
        assert state["engine"]["stats"]["interactive"]["requests"] == 2
