"""The completion lane's state is paid for once: code actions do not spend it.

The real server and engine on the tiny model. What is checked is what each completion had to
prefill (`qcn.status` lastRequest), never the generated text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.lsp.helpers import (
    inline_params,
    lsp_session,
    open_file,
    status,
    until_ready,
)

CHECKPOINT_INTERVAL = 64


def options(model: Path, cache: Path, **completion: Any) -> dict[str, Any]:
    return {
        "model": {"path": str(model), "contextLength": 4096},
        "engine": {"checkpointInterval": CHECKPOINT_INTERVAL},
        "completion": {"maxTokens": 4, "debounceMs": 0, **completion},
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
    tiny_model: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    text = source(60)
    (project / "steps.py").write_text(text)
    cursor = end_of(text)
    async with lsp_session(
        workspace=project, initialization_options=options(tiny_model, tmp_path / "cache")
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

        again = await complete(client, uri, cursor)
        assert again["promptTokens"] == first["promptTokens"]
        # Resumed from the checkpoint next to the cursor, as after a keystroke; not a re-read of
        # the file from the last boundary.
        assert again["restoreKind"] in ("partial", "append"), again
        assert again["prefilledTokens"] <= 3 * CHECKPOINT_INTERVAL, again
        assert after == (before[0], before[1] + 1)  # the code action ran on the background lane
