"""Protocol latency: keystroke → first streamed text → final answer, through the real server.

    PYTHONPATH=. python bench/protocol_latency.py [--preset small] [--keystrokes 40]

Starts `python -m qcn_lsp` over stdio like an editor, with the `small` generated model
(written under .cache/bench/), opens a file and types into it. Each keystroke is a
`textDocument/didChange` followed at once by an automatic `textDocument/inlineCompletion`
(debounce 0, so no deliberate wait is measured); the next keystroke waits for the answer.
The client timestamps the first `qcn/completionProgress` notification carrying text and the
response, and compares both with the engine's own numbers for the same request, which the
final notification carries in `report.ms` (`first_token` and `total` are measured from the
moment the engine received the prompt). The difference is what the protocol, the server's
prompt building and the event loop add.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.testing import write_test_model  # noqa: E402
from qcn_lsp.completer import PROGRESS_METHOD  # noqa: E402

CACHE = ROOT / ".cache" / "bench"
# What the benchmark types: a line at the end of a small module, then a second one.
SOURCE = '''"""Geometry helpers."""

import math


def area(width: float, height: float) -> float:
    return width * height


def circle(radius: float) -> float:
    return math.pi * radius**2


'''
TYPED = "def perimeter(width, height):\n    return 2 * (width + height)\n"
START_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 90.0


@dataclass
class Sample:
    """One keystroke's timings in ms (client clock for the first two, engine clock after)."""

    first_text_ms: float | None
    final_ms: float
    engine_first_token_ms: float | None = None
    engine_total_ms: float | None = None
    reused: bool = False


@dataclass
class Stream:
    """Notifications of the request in flight, matched by document version."""

    version: int = -1
    first_text_at: float | None = None
    engine_ms: dict[str, float] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)


def capabilities() -> types.ClientCapabilities:
    # No workspace/configuration, progress or dynamic registration: nothing but the requests
    # measured travels between client and server.
    return types.ClientCapabilities(
        text_document=types.TextDocumentClientCapabilities(
            synchronization=types.TextDocumentSyncClientCapabilities(did_save=True),
            inline_completion=types.InlineCompletionClientCapabilities(),
        ),
        experimental={"qcnCompletionProgress": True},
    )


def position_after(text: str) -> types.Position:
    lines = text.split("\n")
    return types.Position(line=len(lines) - 1, character=len(lines[-1]))


async def drain(stream: asyncio.StreamReader | None, tail: list[bytes]) -> None:
    # The server's stderr must be read, or a full pipe would block its logging.
    while stream is not None and (line := await stream.readline()):
        tail.append(line)
        del tail[:-20]


async def wait_ready(client: LanguageClient) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT_S
    state = "no answer"
    while time.monotonic() < deadline:
        status = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="qcn.status", arguments=[])
        )
        assert isinstance(status, dict)
        state = status["engine"]["state"]
        if state == "ready":
            return status
        await asyncio.sleep(0.1)
    raise TimeoutError(f"model not ready in {START_TIMEOUT_S:.0f} s: {state}")


async def run(model: Path, workspace: Path, keystrokes: int, max_tokens: int) -> dict[str, Any]:
    client = LanguageClient("qcn-bench", "1")
    stream = Stream()

    @client.feature(PROGRESS_METHOD)
    def on_progress(_client: LanguageClient, params: Any) -> None:
        if params.version != stream.version:
            return
        if params.text and not params.done and stream.first_text_at is None:
            stream.first_text_at = time.perf_counter()
        if params.done:
            # pygls hands custom notifications over as namedtuples.
            report = getattr(params, "report", None)
            stream.engine_ms = report.ms._asdict() if report is not None else {}
            stream.done.set()

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def on_log(_client: LanguageClient, params: types.LogMessageParams) -> None:
        pass  # the server's settings report: not measured

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("QCN_MODEL", None)
    await client.start_io(
        sys.executable, "-m", "qcn_lsp", "--log-level", "WARNING", env=env, cwd=str(ROOT)
    )
    stderr_tail: list[bytes] = []
    server = client._server  # the subprocess pygls started
    drainer = asyncio.create_task(drain(server.stderr if server else None, stderr_tail))
    options = {
        "model": {"path": str(model), "contextLength": 4096},
        "completion": {"maxTokens": max_tokens, "debounceMs": 0, "temperature": 0.0},
        "cache": {"dir": str(CACHE / "server-cache")},
    }
    samples: list[Sample] = []
    try:
        await client.initialize_async(
            types.InitializeParams(
                capabilities=capabilities(),
                initialization_options=options,
                root_uri=workspace.as_uri(),
                workspace_folders=[types.WorkspaceFolder(uri=workspace.as_uri(), name="ws")],
            )
        )
        client.initialized(types.InitializedParams())
        status = await wait_ready(client)
        path = workspace / "geometry.py"
        uri = path.as_uri()
        text = SOURCE
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=text
                )
            )
        )
        for version, char in enumerate((TYPED * 4)[:keystrokes], start=2):
            at = position_after(text)
            text += char
            stream.version = version
            stream.first_text_at = None
            stream.engine_ms = {}
            stream.done = asyncio.Event()
            started = time.perf_counter()
            client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                    content_changes=[
                        types.TextDocumentContentChangePartial(
                            range=types.Range(start=at, end=at), text=char
                        )
                    ],
                )
            )
            await asyncio.wait_for(
                client.text_document_inline_completion_async(
                    types.InlineCompletionParams(
                        text_document=types.TextDocumentIdentifier(uri=uri),
                        position=position_after(text),
                        context=types.InlineCompletionContext(
                            trigger_kind=types.InlineCompletionTriggerKind.Automatic
                        ),
                    )
                ),
                REQUEST_TIMEOUT_S,
            )
            final = time.perf_counter()
            # The done notification is sent just before the response: give it a moment.
            try:
                await asyncio.wait_for(stream.done.wait(), 1.0)
            except TimeoutError:
                samples.append(Sample(None, (final - started) * 1000, reused=True))
                continue
            ms = stream.engine_ms
            first = stream.first_text_at
            samples.append(
                Sample(
                    first_text_ms=None if first is None else (first - started) * 1000,
                    final_ms=(final - started) * 1000,
                    engine_first_token_ms=ms.get("first_token"),
                    engine_total_ms=ms.get("total"),
                )
            )
        await asyncio.wait_for(client.shutdown_async(None), 10)
        client.exit(None)
    finally:
        # After a failure the server may still run: stop it first, or stopping the client
        # would wait for it.
        if server is not None and server.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait(), 5)
            if server.returncode is None:
                server.kill()
        await asyncio.wait_for(client.stop(), 10)
        drainer.cancel()
    if not samples:
        raise RuntimeError(b"".join(stderr_tail).decode(errors="replace"))
    return {"status": status, "samples": samples}


def median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def summarize(samples: list[Sample]) -> dict[str, Any]:
    generated = [s for s in samples if not s.reused and s.engine_first_token_ms is not None]
    with_text = [s for s in generated if s.first_text_ms is not None]
    first_client = [s.first_text_ms for s in with_text if s.first_text_ms is not None]
    first_engine = [s.engine_first_token_ms for s in with_text if s.engine_first_token_ms]
    first_overhead = [
        s.first_text_ms - s.engine_first_token_ms
        for s in with_text
        if s.first_text_ms is not None and s.engine_first_token_ms is not None
    ]
    final_client = [s.final_ms for s in generated]
    final_engine = [s.engine_total_ms for s in generated if s.engine_total_ms is not None]
    final_overhead = [
        s.final_ms - s.engine_total_ms for s in generated if s.engine_total_ms is not None
    ]
    ratio_first = median(first_client) and median(first_engine)
    return {
        "keystrokes": len(samples),
        "generated": len(generated),
        "with_streamed_text": len(with_text),
        "reused_or_no_model": len(samples) - len(generated),
        "first_text_client_ms": median(first_client),
        "first_token_engine_ms": median(first_engine),
        "first_overhead_ms": median(first_overhead),
        "first_overhead_p90_ms": (
            round(statistics.quantiles(first_overhead, n=10)[-1], 1)
            if len(first_overhead) >= 10
            else None
        ),
        "first_ratio": (
            round(median(first_client) / median(first_engine), 2)  # type: ignore[operator]
            if ratio_first
            else None
        ),
        "final_client_ms": median(final_client),
        "total_engine_ms": median(final_engine),
        "final_overhead_ms": median(final_overhead),
        "reused_final_ms": median([s.final_ms for s in samples if s.reused]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=("tiny", "small"), default="small")
    parser.add_argument("--keystrokes", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    model = CACHE / f"{args.preset}.gguf"
    if not model.is_file():
        write_test_model(model, preset=args.preset, seed=0)
    workspace = CACHE / "protocol-ws"
    workspace.mkdir(exist_ok=True)
    (workspace / "geometry.py").write_text(SOURCE)
    started = time.perf_counter()
    result = asyncio.run(run(model, workspace, args.keystrokes, args.max_tokens))
    # The first keystroke prefills the whole file (nothing cached yet): reported apart.
    cold, *warm = result["samples"]
    summary = summarize(warm)
    engine = result["status"]["engine"]
    print(
        json.dumps(
            {
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
                "model": f"{args.preset} ({engine.get('arch')}, {engine.get('layers')} layers)",
                "max_tokens": args.max_tokens,
                "seconds": round(time.perf_counter() - started, 1),
                "cold_first_text_ms": cold.first_text_ms and round(cold.first_text_ms, 1),
                "cold_first_token_engine_ms": cold.engine_first_token_ms,
                **summary,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
