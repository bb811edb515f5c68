"""Exactness a user can check: the same typing trace through the LSP with the prompt cache and
with `engine.promptCache: false` gives the same completions for the same prompts.

The real server and engine on the tiny model. One trace of edits anywhere in a file, a file
switch and back, and an editor restart with persisted state, replayed twice: every
completion's text and `promptDigest` (the sha256 of its prompt's tokens) must be equal, the
cached run must actually have reused state (checkpoints in RAM, the persisted state after the
restart), and the uncached one never. Before each completion the index has caught up
(`index.pendingUpdates` is 0), so the repository context is the same in both runs.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.lsp.helpers import (
    inline_params,
    insert,
    lsp_session,
    open_document,
    status,
    until_ready,
    until_status,
)

A_FILE = "app/a.py"
B_FILE = "app/b.py"


def write_project(root: Path) -> None:
    (root / "app").mkdir(parents=True)
    (root / "app" / "__init__.py").write_text("")
    (root / B_FILE).write_text(
        "".join(f"def helper_{k}(value):\n    return value + {k}\n\n\n" for k in range(5))
    )
    imports = "from app.b import helper_0, helper_1, helper_2, helper_3, helper_4\n\n\n"
    body = "".join(
        f"def compute_{n}(value):\n    return helper_{n % 5}(value) * {n}\n\n\n" for n in range(60)
    )
    (root / A_FILE).write_text(imports + body + "total = ")


# The trace: ("complete", file, line, col) | ("type", file, line, col, text) |
# ("switch", file) | ("restart",). Lines and columns are 0-based, in the current text.
TRACE: list[tuple[Any, ...]] = [
    ("switch", A_FILE),
    ("complete", A_FILE, -1, -1),
    ("type", A_FILE, -1, -1, "c"),
    ("complete", A_FILE, -1, -1),
    ("type", A_FILE, -1, -1, "ompute_1("),
    ("complete", A_FILE, -1, -1),
    ("type", A_FILE, 3, 0, "# an edit near the top\n"),
    ("complete", A_FILE, -1, -1),
    ("complete", A_FILE, 180, 4),
    ("type", A_FILE, 180, 4, "value = "),
    ("complete", A_FILE, 180, 12),
    ("switch", B_FILE),
    ("complete", B_FILE, 9, 4),
    ("switch", A_FILE),
    # A new state: the same one would get its earlier run's answer, without the model.
    ("type", A_FILE, 180, 12, "1"),
    ("complete", A_FILE, 180, 13),
    ("restart",),
    ("switch", A_FILE),
    ("complete", A_FILE, 180, 13),
    ("complete", A_FILE, -1, -1),
    ("complete", A_FILE, 60, 0),
    ("type", A_FILE, 60, 0, "x"),
    ("complete", A_FILE, 60, 1),
]


def options(model: Path, cache: Path, prompt_cache: bool) -> dict[str, Any]:
    return {
        "model": {"path": str(model), "contextLength": 8192},
        "engine": {"checkpointInterval": 64, "promptCache": prompt_cache},
        "completion": {"maxTokens": 8, "debounceMs": 0, "timeoutMs": 120_000},
        "context": {"budgetTokens": 1024},
        "cache": {"dir": str(cache)},
    }


@dataclass
class Editor:
    """The client's side of the trace: document texts and versions."""

    root: Path
    texts: dict[str, str] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)

    def uri(self, name: str) -> str:
        return (self.root / name).as_uri()

    def position(self, name: str, line: int, col: int) -> types.Position:
        lines = self.texts[name].split("\n")
        if line < 0:
            line, col = len(lines) - 1, len(lines[-1])
        return types.Position(line=line, character=col)


async def caught_up(client: LanguageClient) -> None:
    await until_status(
        client,
        lambda state: (
            state["index"]["state"].startswith("ready") and state["index"]["pendingUpdates"] == 0
        ),
        every_s=0.02,
    )


async def replay(model: Path, project: Path, cache: Path, prompt_cache: bool) -> list[dict]:
    editor = Editor(project)
    results: list[dict[str, Any]] = []
    async with contextlib.AsyncExitStack() as stack:

        async def start() -> LanguageClient:
            client, _ = await stack.enter_async_context(
                lsp_session(
                    workspace=project, initialization_options=options(model, cache, prompt_cache)
                )
            )
            editor.versions.clear()
            await until_ready(client)
            return client

        client = await start()
        for step in TRACE:
            kind, *args = step
            if kind == "restart":
                await stack.aclose()
                client = await start()
            elif kind == "switch":
                (name,) = args
                if name not in editor.versions:
                    text = editor.texts.setdefault(name, (project / name).read_text())
                    editor.versions[name] = 1
                    open_document(client, editor.uri(name), text)
            elif kind == "type":
                name, line, col, typed = args
                at = editor.position(name, line, col)
                lines = editor.texts[name].split("\n")
                lines[at.line] = (
                    lines[at.line][: at.character] + typed + lines[at.line][at.character :]
                )
                editor.texts[name] = "\n".join(lines)
                editor.versions[name] += 1
                insert(client, editor.uri(name), editor.versions[name], at, typed)
            else:
                name, line, col = args
                await caught_up(client)
                answer = await client.text_document_inline_completion_async(
                    inline_params(editor.uri(name), editor.position(name, line, col))
                )
                assert isinstance(answer, types.InlineCompletionList)
                report = (await status(client))["lastRequest"]
                results.append(
                    {
                        "step": step,
                        "text": answer.items[0].insert_text if answer.items else "",
                        **{
                            k: report[k]
                            for k in (
                                "promptDigest",
                                "restoreKind",
                                "reusedTokens",
                                "generatedTokens",
                                "cancelled",
                            )
                        },
                    }
                )
    return results


async def test_the_same_trace_with_and_without_the_prompt_cache(
    tiny_model: Path, tmp_path: Path
) -> None:
    runs = {}
    project = tmp_path / "project"  # one path: the repository name and paths are in the prompt
    for prompt_cache in (True, False):
        shutil.rmtree(project, ignore_errors=True)
        write_project(project)
        runs[prompt_cache] = await replay(
            tiny_model, project, tmp_path / f"cache-{prompt_cache}", prompt_cache
        )
    cached, fresh = runs[True], runs[False]
    assert len(cached) == len(fresh) == sum(step[0] == "complete" for step in TRACE)
    for with_cache, without in zip(cached, fresh, strict=True):
        assert with_cache["promptDigest"] == without["promptDigest"], (with_cache, without)
        assert with_cache["text"] == without["text"], (with_cache, without)
        if not (with_cache["cancelled"] or without["cancelled"]):
            assert with_cache["generatedTokens"] == without["generatedTokens"]
    assert all(r["restoreKind"] == "none" and r["reusedTokens"] == 0 for r in fresh), fresh
    kinds = [r["restoreKind"] for r in cached]
    assert {"partial", "full", "append"} & set(kinds), kinds
    after_restart = TRACE.index(("restart",))
    first_after = sum(step[0] == "complete" for step in TRACE[:after_restart])
    assert kinds[first_after] == "disk", kinds
    assert len({r["promptDigest"] for r in cached}) > len(cached) // 2  # the prompts did change
