"""A long editing session against one server: does anything grow or slow down?

    PYTHONPATH=. python bench/soak.py [--keystrokes 10000] [--model PATH]

One `qcn-lsp` process (the tiny test model by default), driven as an editor: typing in a
file with a completion per keystroke (a third of them left to be superseded by the next
keystroke, as when typing fast), a switch to another file every 400 keystrokes, a save (the
file written, then didSave) every 150, a code action resolved every 1,000 and a qcn.refactor
every 2,500 (the first of each at keystrokes 100 and 150, inside the warm-up). Every 500 keystrokes (a tenth of the run when shorter) it samples qcn.status:
the server's RSS, threads, open files, asyncio tasks and tracked handlers, the checkpoint
caches' bytes against their budgets, and the cache directory's size against the persisted
state's cap. It reports, with a verdict for each goal:

- RSS growth from the end of warm-up (the first 1,000 keystrokes, a fifth of a shorter run)
  to the end (goal <= 10%);
- checkpoint bytes (now and peak) within `engine.checkpointMemoryMB` per lane; the cache
  directory within the persisted state's cap;
- threads, asyncio tasks, open files, handlers in flight after warm-up and at the end (no
  leak: no more at the end);
- completion latency (request to answer) over the first and the last 1,000 keystrokes.

What is typed is undone once typed (rounds of the same lines, numbered), so that the
documents, and with them the prompts, stay the size they were: growth then means a leak, not
a longer file.

A smoke run: `--keystrokes 300`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lsprotocol import types  # noqa: E402
from pygls.exceptions import JsonRpcException  # noqa: E402
from pytest_lsp import LanguageClient  # noqa: E402

from engine.config import EngineConfig  # noqa: E402
from tests.lsp.helpers import (  # noqa: E402
    change,
    inline_params,
    lsp_session,
    open_document,
    status,
    until_ready,
    until_status,
)

POLY = ROOT / "tests" / "fixtures" / "repos" / "poly"
TYPED = (
    "\n    total = compute(value, other=[1, 2, 3])  # running sum"
    "\n    if total > limit:\n        return total - limit"
    "\n    result.append(helper(total))"
)
WARM_UP = 1000
SAMPLE_EVERY = 500
LATENCY_WINDOW = 1000
RSS_GROWTH_GOAL = 0.10
CHECKPOINT_MB = 64


def tree_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


class Editor:
    """Documents as the client has them, typed into at a cursor."""

    def __init__(self, client: LanguageClient, root: Path) -> None:
        self.client = client
        self.root = root
        self.texts: dict[str, str] = {}
        self.versions: dict[str, int] = {}
        self.cursors: dict[str, int] = {}

    def open(self, name: str) -> str:
        uri = (self.root / name).as_uri()
        if uri not in self.texts:
            text = (self.root / name).read_text()
            self.texts[uri], self.versions[uri] = text, 1
            # The cursor at the end of a line two thirds into the file.
            self.cursors[uri] = text.find("\n", len(text) * 2 // 3)
            if self.cursors[uri] < 0:
                self.cursors[uri] = len(text)
            open_document(self.client, uri, text)
        return uri

    def position(self, uri: str) -> types.Position:
        before = self.texts[uri][: self.cursors[uri]]
        line = before.count("\n")
        return types.Position(line=line, character=len(before) - (before.rfind("\n") + 1))

    def type(self, uri: str, character: str) -> types.Position:
        at = self.position(uri)
        offset = self.cursors[uri]
        text = self.texts[uri]
        self.texts[uri] = text[:offset] + character + text[offset:]
        self.cursors[uri] = offset + len(character)
        self.versions[uri] += 1
        change(self.client, uri, self.versions[uri], at, at, character)
        return self.position(uri)

    def undo_typing(self, uri: str, length: int) -> None:
        """Remove the `length` characters before the cursor in one change, as an undo does:
        the documents stay the size they were, so the session's later prompts are no longer
        than its first ones."""
        end = self.position(uri)
        offset = self.cursors[uri]
        text = self.texts[uri]
        self.cursors[uri] = offset - length
        start = self.position(uri)
        self.texts[uri] = text[: offset - length] + text[offset:]
        self.versions[uri] += 1
        change(self.client, uri, self.versions[uri], start, end, "")

    def save(self, uri: str) -> None:
        """As an editor saves: the file written, then didSave."""
        (self.root / Path(uri.removeprefix(self.root.as_uri() + "/"))).write_text(self.texts[uri])
        self.client.text_document_did_save(
            types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )


def sample(state: dict[str, Any], cache: Path, keystroke: int) -> dict[str, Any]:
    stats = state["engine"].get("stats", {})
    lanes = {
        name: {"bytes": lane["bytes"], "budget": lane["budget_bytes"], "peak": lane["peak_bytes"]}
        for name, lane in stats.items()
        if isinstance(lane, dict) and "budget_bytes" in lane
    }
    return {
        "keystroke": keystroke,
        **state["process"],
        "lanes": lanes,
        "cacheBytes": tree_bytes(cache),
        "indexFiles": state["index"].get("files"),
        "indexBacklog": state["index"].get("pendingUpdates"),
        # The latest completion: how much it read and where its time went.
        "lastRequest": {
            key: (state.get("lastRequest") or {}).get(key)
            for key in ("promptTokens", "prefilledTokens", "restoreKind", "ms")
        },
    }


async def soak(model: Path, keystrokes: int, work: Path) -> dict[str, Any]:
    project = work / "project"
    shutil.copytree(POLY, project)
    for n in range(30):  # a few more files to rank
        (project / "py" / "app" / f"extra_{n}.py").write_text(
            "".join(f"def extra_{n}_{k}(value):\n    return value + {k}\n\n\n" for k in range(20))
        )
    cache = work / "cache"
    settings: dict[str, Any] = {
        "model": {"path": str(model), "contextLength": 8192},
        "completion": {"maxTokens": 16, "debounceMs": 0},
        "context": {"budgetTokens": 2048},
        "edits": {"maxTokens": 32, "maxToolRounds": 1},
        "engine": {"checkpointMemoryMB": CHECKPOINT_MB},
        "cache": {"dir": str(cache)},
        "log": {"level": "WARNING"},
    }
    sample_every = max(1, min(SAMPLE_EVERY, keystrokes // 10))
    files = ["py/app/service.py", "py/app/models.py", "ts/shapes.ts", "go/geom/geom.go"]
    # (keystroke, ms, file) of the awaited completions
    latencies: list[tuple[int, float, str]] = []
    samples: list[dict[str, Any]] = []
    async with lsp_session(workspace=project, initialization_options=settings) as (client, _):

        @client.feature(types.WORKSPACE_APPLY_EDIT)
        def apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
            return types.ApplyWorkspaceEditResult(applied=False, failure_reason="soak")

        editor = Editor(client, project)
        current = files[0]
        uri = editor.open(current)
        await until_ready(client)
        await until_status(client, lambda s: s["index"]["state"].startswith("ready"))
        samples.append(sample(await status(client), cache, 0))
        started = time.perf_counter()
        # Rounds of TYPED, each told apart by its number (no document state repeats), each
        # undone once typed or when the user leaves the file.
        rounds, typed = 0, 0
        round_text = TYPED
        for keystroke in range(1, keystrokes + 1):
            if keystroke % 400 == 0 or typed == len(round_text):
                if typed:
                    editor.undo_typing(uri, typed)
                rounds, typed = rounds + 1, 0
                round_text = TYPED.replace("running sum", f"running sum {rounds}")
            if keystroke % 400 == 0:
                current = files[(keystroke // 400) % len(files)]
                uri = editor.open(current)
            character = round_text[typed]
            position = editor.type(uri, character)
            typed += 1
            request = client.text_document_inline_completion_async(
                inline_params(uri, position, invoked=False)
            )
            if keystroke % 3 == 0:
                # Typing fast: the next keystroke supersedes this one (its answer is dropped).
                asyncio.ensure_future(request).add_done_callback(lambda f: f.exception())
            else:
                begun = time.perf_counter()
                # Superseded by the engine (RequestCancelled): a normal answer too.
                with contextlib.suppress(JsonRpcException):
                    await request
                latencies.append((keystroke, (time.perf_counter() - begun) * 1000, current))
            if keystroke % 150 == 0:
                editor.save(uri)
            # The first of each early, inside the warm-up: the background lane (its own llama
            # context and worker) starts with the first, and belongs to the warmed-up size.
            if keystroke % 1000 == 100:
                await code_action(client, uri, position)
            if keystroke % 2500 == 150:
                await refactor(client)
            if keystroke % sample_every == 0:
                samples.append(sample(await status(client), cache, keystroke))
                print(json.dumps(samples[-1]), flush=True)
        elapsed = time.perf_counter() - started
        await asyncio.sleep(1)  # let superseded requests finish
        final = sample(await status(client), cache, keystrokes)
    return {
        "samples": samples,
        "final": final,
        "latencies": latencies,
        "seconds": elapsed,
    }


async def code_action(client: LanguageClient, uri: str, position: types.Position) -> None:
    line = max(0, position.line - 1)
    selection = types.Range(
        start=types.Position(line=line, character=0), end=types.Position(line=line + 1, character=0)
    )
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=selection,
            context=types.CodeActionContext(diagnostics=[]),
        )
    )
    for action in actions or []:
        if isinstance(action, types.CodeAction):
            # Refused with a reason, usually: the random model's noise.
            with contextlib.suppress(JsonRpcException):
                await client.code_action_resolve_async(action)
            return


async def refactor(client: LanguageClient) -> None:
    with contextlib.suppress(JsonRpcException):
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(
                command="qcn.refactor",
                arguments=[{"instruction": "rename to something clearer", "symbol": "make_user"}],
            )
        )


def resource_checks(result: dict[str, Any], keystrokes: int) -> list[tuple[bool, str]]:
    """(held, what was found) for each goal but latency: RSS growth after warm-up, the
    lanes' checkpoint bytes, the cache directory, and no leak of threads, tasks, files or
    handlers (tests/lsp/test_soak.py runs a short session through these)."""
    samples, final = result["samples"], result["final"]
    warm_up = min(WARM_UP, keystrokes // 5)
    warm = next(s for s in samples if s["keystroke"] >= warm_up)
    everything = [*samples, final]
    growth = (final["rssBytes"] - warm["rssBytes"]) / warm["rssBytes"]
    peak_rss = max(s["rssBytes"] for s in everything)
    checks = [
        (
            growth <= RSS_GROWTH_GOAL,
            f"{keystrokes} keystrokes in {result['seconds']:.0f} s; RSS "
            f"{warm['rssBytes'] / 2**20:.0f} MB after warm-up ({warm['keystroke']} keystrokes) "
            f"-> {final['rssBytes'] / 2**20:.0f} MB at the end ({growth:+.1%}, goal <= "
            f"+{RSS_GROWTH_GOAL:.0%}), highest sample {peak_rss / 2**20:.0f} MB",
        )
    ]
    for name, lane in final["lanes"].items():
        peak = max(s["lanes"].get(name, {}).get("peak", 0) for s in everything)
        checks.append(
            (
                peak <= lane["budget"],
                f"{name} lane checkpoints: {lane['bytes'] / 2**20:.1f} MB now, peak "
                f"{peak / 2**20:.1f} MB, budget {lane['budget'] / 2**20:.1f} MB (engine."
                f"checkpointMemoryMB {CHECKPOINT_MB})",
            )
        )
    cap = EngineConfig(model_path="").state_cache_bytes
    checks.append(
        (
            final["cacheBytes"] <= cap,
            f"cache directory {final['cacheBytes'] / 2**20:.1f} MB, persisted state cap "
            f"{cap / 2**30:.0f} GiB (index {final['indexFiles']} files)",
        )
    )
    # Pools grow on demand up to their bound (asyncio's default executor, the lanes' workers):
    # a leak is growth that goes on, so the end is compared with the first half's highest.
    half = [s for s in samples if s["keystroke"] <= keystrokes // 2]
    for key in ("threads", "asyncioTasks", "openFiles", "handlersInFlight"):
        bound = max(s[key] for s in half)
        checks.append(
            (
                final[key] <= bound,
                f"{key}: start {samples[0][key]}, after warm-up {warm[key]}, highest in the "
                f"first half {bound}, end {final[key]}",
            )
        )
    return checks


def report(result: dict[str, Any], keystrokes: int) -> None:
    for held, line in resource_checks(result, keystrokes):
        print(f"{line}: {'ok' if held else 'FAILED'}")
    latencies = result["latencies"]
    window = min(LATENCY_WINDOW, keystrokes // 2)
    head = [ms for keystroke, ms, _ in latencies if keystroke <= window]
    tail = [ms for keystroke, ms, _ in latencies if keystroke > keystrokes - window]
    for name, part in ((f"first {window}", head), (f"last {window}", tail)):
        print(
            f"completion latency, {name} keystrokes ({len(part)} awaited): median "
            f"{statistics.median(part):.1f} ms, p95 {percentile(part, 0.95):.1f} ms"
        )
    slowest = sorted(latencies, key=lambda row: -row[1])[:5]
    print("slowest: " + ", ".join(f"keystroke {k} {ms:.0f} ms" for k, ms, _ in slowest))
    print(
        f"latency drift (median last / first): "
        f"{statistics.median(tail) / statistics.median(head):.2f}x"
    )
    # The windows above hold different files (a switch every 400 keystrokes), whose prompts
    # and completions differ: like with like is each file's first visit against its last.
    for name in dict.fromkeys(file for _, _, file in latencies):
        visits: dict[int, list[float]] = {}
        for keystroke, ms, file in latencies:
            if file == name:
                visits.setdefault(keystroke // 400, []).append(ms)
        first, last = visits[min(visits)], visits[max(visits)]
        print(
            f"{name}: median {statistics.median(first):.1f} ms on its first visit, "
            f"{statistics.median(last):.1f} ms on its last ({len(visits)} visits): "
            f"{statistics.median(last) / statistics.median(first):.2f}x"
        )
    print(f"load average at the end: {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keystrokes", type=int, default=10000)
    parser.add_argument("--model", type=Path, help="GGUF (default: a fresh tiny test model)")
    args = parser.parse_args()
    print(f"load average at the start: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from engine.testing import write_test_model

            model = write_test_model(Path(tmp) / "tiny.gguf", preset="tiny", seed=0)
        result = asyncio.run(soak(model, args.keystrokes, Path(tmp)))
    report(result, args.keystrokes)


if __name__ == "__main__":
    main()
