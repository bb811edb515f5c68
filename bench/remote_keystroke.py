"""What a keystroke costs through qcn-lsp → llama-server, with and without request shaping,
against qcn-lsp's in-process engine: same model, same trace, same repository budgets.

    PYTHONPATH=. python bench/remote_keystroke.py --budgets 1k,16k \
        [--llama-server PATH] [--preset small] [--threads 2] [--keys N] [--out FILE.json]

(`--preset tiny --budgets 1k --keys 1` is a smoke run of a minute or two.)

Each configuration starts its own `python -m qcn_lsp` over stdio like an editor (and, for the
remote ones, a fresh llama-server with its checkpoint flags): `local` (backend.kind = local),
`remote-plain` (backend.kind = openai, shapeRequests = off: the requests any OpenAI client
sends) and `remote-shaped` (shapeRequests = on: engine/remote/shaping.py). The workspace holds
standard-library modules; the current file is `cmd.py`. The trace types at spot A (line 200),
jumps to spot B 60 lines above and types there, then goes back to A and types again; every
keystroke is a didChange and an explicit inline completion request, answered before the next.

Per keystroke: the tokens the model prefilled for the request (the final qcn/completionProgress
report: the engine's own count in-process, llama-server's `timings.prompt_n` remotely), the
tokens warm requests prefilled before it (shaping; from qcn.status, llama-server's
`timings.prompt_n` of each warm request), and the client's latency from didChange to the
answer. A keystroke answered from the previous suggestion (typed ahead) runs no model: it is
counted apart and left out of the medians. Ratios compare each remote configuration with
`local` and shaped with plain, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from lsprotocol import types
from pygls.lsp.client import LanguageClient

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# A sibling script (bench/ is on sys.path when this one runs).
from protocol_latency import capabilities, drain, wait_ready  # noqa: E402

from engine.testing import write_test_model  # noqa: E402
from qcn_lsp.completer import PROGRESS_METHOD  # noqa: E402

CACHE = ROOT / ".cache" / "bench"
STDLIB = Path(os.__file__).parent
CURRENT = "cmd.py"
DEFAULT_LLAMA_SERVER = Path(
    "/work/tools/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/llama-server"
)
SPOT_A_LINE, SPOT_B_LINE = 200, 140
# (pattern, spot, characters typed there one by one)
TRACE = (
    ("type at A", "A", "value "),
    ("jump to B", "B", "n"),
    ("type at B", "B", "ame "),
    ("back to A", "A", "="),
    ("type at A again", "A", " 1"),
)
N_CTX = 32768
# llama-server's flags as docs/remote.md recommends them (the same for both remote configs;
# without message delimiters a raw prompt gets no mid-prompt checkpoints whatever the step).
CHECKPOINTS, MIN_STEP = 32, 512
REQUEST_TIMEOUT_S = 600.0  # completion.timeoutMs's maximum: each answer is waited for


@dataclass
class Key:
    pattern: str
    prefilled: int
    warm: int
    prompt_tokens: int
    latency_ms: float
    model_ran: bool = True


def workspace(budget: int) -> Path:
    """Standard-library modules (enough to fill the budget) and the current file."""
    root = CACHE / "remote-ws"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    total = 0
    for path in sorted(STDLIB.glob("*.py")):
        text = path.read_text(errors="replace")
        shutil.copy(path, root / path.name)
        total += len(text)
        if path.name != CURRENT and total > 8 * budget:  # ~2-4 chars per token, and spare
            break
    shutil.copy(STDLIB / CURRENT, root / CURRENT)
    return root


@contextlib.contextmanager
def llama_server(binary: Path, model: Path, threads: int, log: Path) -> Iterator[str]:
    """llama-server with its checkpoint flags on a free loopback port; yields its /v1 URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    command = [
        str(binary),
        "-m",
        str(model),
        "--alias",
        "bench",
        "-c",
        str(N_CTX),
        "-np",
        "1",
        "-t",
        str(threads),
        "--ctx-checkpoints",
        str(CHECKPOINTS),
        "--checkpoint-min-step",
        str(MIN_STEP),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).is_success:
                    break
            if process.poll() is not None:
                raise RuntimeError(f"llama-server exited: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(30)


def options(config: str, model: Path, budget: int, url: str | None) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "model": {"path": str(model), "contextLength": N_CTX},
        "context": {"budgetTokens": budget},
        "completion": {
            "maxTokens": 4,
            "debounceMs": 0,
            "indexWaitMs": 600000,
            "timeoutMs": int(REQUEST_TIMEOUT_S * 1000),
        },
        "cache": {"dir": str(CACHE / f"remote-cache-{config}")},
    }
    if url is not None:
        shape = "on" if config == "remote-shaped" else "off"
        settings["backend"] = {
            "kind": "openai",
            "baseUrl": url,
            "model": "bench",
            "shapeRequests": shape,
            "readTimeoutS": REQUEST_TIMEOUT_S,
        }
    return settings


async def command(client: LanguageClient, name: str) -> dict[str, Any]:
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=name, arguments=[])
    )
    assert isinstance(result, dict)
    return result


def offset_of(text: str, line: int) -> int:
    """The end of `line` (0-based) without its newline."""
    lines = text.split("\n")
    return sum(len(x) + 1 for x in lines[:line]) + len(lines[line])


def position(text: str, offset: int) -> types.Position:
    before = text[:offset]
    return types.Position(line=before.count("\n"), character=offset - before.rfind("\n") - 1)


async def run(
    config: str, model: Path, root: Path, budget: int, url: str | None, trace: tuple
) -> dict:
    client = LanguageClient("qcn-bench", "1")
    finals: dict[int, Any] = {}

    @client.feature(PROGRESS_METHOD)
    def on_progress(_client: LanguageClient, params: Any) -> None:
        if params.done:
            finals[params.version] = params.report

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def on_log(_client: LanguageClient, params: types.LogMessageParams) -> None:
        pass

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("QCN_MODEL", None)
    shutil.rmtree(CACHE / f"remote-cache-{config}", ignore_errors=True)
    await client.start_io(
        sys.executable, "-m", "qcn_lsp", "--log-level", "WARNING", env=env, cwd=str(ROOT)
    )
    stderr_tail: list[bytes] = []
    server = client._server
    drainer = asyncio.create_task(drain(server.stderr if server else None, stderr_tail))
    keys: list[Key] = []
    cold: Key | None = None
    try:
        await client.initialize_async(
            types.InitializeParams(
                capabilities=capabilities(),
                initialization_options=options(config, model, budget, url),
                root_uri=root.as_uri(),
                workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name="cpython")],
            )
        )
        client.initialized(types.InitializedParams())
        await wait_ready(client)
        for _ in range(600):
            if (await command(client, "qcn.status"))["index"]["state"].startswith("ready"):
                break
            await asyncio.sleep(0.5)
        uri = (root / CURRENT).as_uri()
        text = (root / CURRENT).read_text()
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=text
                )
            )
        )
        spots = {"A": offset_of(text, SPOT_A_LINE), "B": offset_of(text, SPOT_B_LINE)}
        version = 1

        async def keystroke(pattern: str, spot: str, char: str | None) -> Key:
            nonlocal text, version
            warm_before = (await command(client, "qcn.status"))["engine"]["stats"].get(
                "warm_prefilled_tokens", 0
            )
            if char is not None:
                at = spots[spot]
                version += 1
                client.text_document_did_change(
                    types.DidChangeTextDocumentParams(
                        text_document=types.VersionedTextDocumentIdentifier(
                            uri=uri, version=version
                        ),
                        content_changes=[
                            types.TextDocumentContentChangePartial(
                                range=types.Range(start=position(text, at), end=position(text, at)),
                                text=char,
                            )
                        ],
                    )
                )
                text = text[:at] + char + text[at:]
                for name, offset in spots.items():
                    if offset >= at:
                        spots[name] = offset + len(char)
            started = time.perf_counter()
            await asyncio.wait_for(
                client.text_document_inline_completion_async(
                    types.InlineCompletionParams(
                        text_document=types.TextDocumentIdentifier(uri=uri),
                        position=position(text, spots[spot]),
                        context=types.InlineCompletionContext(
                            trigger_kind=types.InlineCompletionTriggerKind.Invoked
                        ),
                    )
                ),
                REQUEST_TIMEOUT_S + 30,
            )
            latency = (time.perf_counter() - started) * 1000
            state = await command(client, "qcn.status")
            report = finals.get(version)
            warm = state["engine"]["stats"].get("warm_prefilled_tokens", 0) - warm_before
            if report is None:  # typed ahead: answered without the model
                return Key(pattern, 0, warm, 0, latency, model_ran=False)
            return Key(pattern, report.prefilledTokens, warm, report.promptTokens, latency)

        cold = await keystroke("cold", "A", None)
        for pattern, spot, chars in trace:
            for char in chars:
                key = await keystroke(pattern, spot, char)
                keys.append(key)
                print(f"  {config} {pattern}: {key}", file=sys.stderr, flush=True)
        await asyncio.wait_for(client.shutdown_async(None), 30)
        client.exit(None)
    finally:
        if server is not None and server.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait(), 10)
            if server.returncode is None:
                server.kill()
        await asyncio.wait_for(client.stop(), 10)
        drainer.cancel()
    if cold is None:
        raise RuntimeError(b"".join(stderr_tail).decode(errors="replace"))
    return {"cold": cold.__dict__, "keys": [k.__dict__ for k in keys]}


def summary(result: dict[str, Any], trace: tuple) -> dict[str, Any]:
    out: dict[str, Any] = {"cold": result["cold"]}
    ran = [k for k in result["keys"] if k["model_ran"]]
    for pattern, _, _ in trace:
        keys = [k for k in ran if k["pattern"] == pattern]
        if not keys:
            continue
        out[pattern] = {
            "keystrokes": len(keys),
            "prefilled_median": statistics.median(k["prefilled"] for k in keys),
            "warm_median": statistics.median(k["warm"] for k in keys),
            "cost_max": max(k["prefilled"] + k["warm"] for k in keys),
            "latency_median_ms": round(statistics.median(k["latency_ms"] for k in keys)),
        }
    out["all"] = {
        "keystrokes": len(result["keys"]),
        "typed_ahead": len(result["keys"]) - len(ran),
        "tokens_total": sum(k["prefilled"] + k["warm"] for k in ran),
        "latency_median_ms": round(statistics.median(k["latency_ms"] for k in ran)) if ran else 0,
        "latency_total_s": round(sum(k["latency_ms"] for k in result["keys"]) / 1000, 1),
    }
    return out


def ratios(results: dict[str, Any], budget: int, configs: list[str]) -> dict[str, Any]:
    """Tokens and latency of each remote configuration over local's, and shaped over plain."""
    pairs = [(c, "local") for c in configs if c != "local"]
    pairs.append(("remote-shaped", "remote-plain"))
    out: dict[str, Any] = {}
    for config, base in pairs:
        a, b = results.get(f"{budget}/{config}"), results.get(f"{budget}/{base}")
        if a is None or b is None:
            continue
        a_all, b_all = a["summary"]["all"], b["summary"]["all"]
        out[f"{config} / {base}"] = {
            "tokens": _ratio(a_all["tokens_total"], b_all["tokens_total"]),
            "latency_median": _ratio(a_all["latency_median_ms"], b_all["latency_median_ms"]),
            "latency_total": _ratio(a_all["latency_total_s"], b_all["latency_total_s"]),
        }
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def shortened(keys: int | None) -> tuple:
    """The trace with at most `keys` characters typed per pattern."""
    if keys is None:
        return TRACE
    return tuple((pattern, spot, chars[:keys]) for pattern, spot, chars in TRACE)


def parse_size(text: str) -> int:
    text = text.strip().lower()
    return int(float(text[:-1]) * 1024) if text.endswith("k") else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default="1k,16k")
    parser.add_argument("--configs", default="local,remote-plain,remote-shaped")
    parser.add_argument("--preset", choices=("tiny", "small"), default="small")
    parser.add_argument("--llama-server", type=Path, default=DEFAULT_LLAMA_SERVER)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keys", type=int, help="at most N characters per trace pattern")
    parser.add_argument("--out", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    configs = args.configs.split(",")
    if any(c != "local" for c in configs) and not args.llama_server.is_file():
        parser.error(
            f"no llama-server at {args.llama_server}: build it from the llama.cpp that "
            "llama-cpp-python 0.3.36 vendors (cmake --build build --target llama-server) "
            "and pass --llama-server PATH"
        )
    trace = shortened(args.keys)
    CACHE.mkdir(parents=True, exist_ok=True)
    model = CACHE / f"{args.preset}.gguf"
    if not model.is_file():
        write_test_model(model, preset=args.preset, seed=0)
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "load_average_at_start": os.getloadavg()[0],
        "model": args.preset,
        "n_ctx": N_CTX,
        "trace": [f"{pattern}: {chars!r}" for pattern, _, chars in trace],
        "llama_server_flags": f"-c {N_CTX} -np 1 --ctx-checkpoints {CHECKPOINTS} "
        f"--checkpoint-min-step {MIN_STEP}",
    }
    for budget in (parse_size(b) for b in args.budgets.split(",")):
        root = workspace(budget)
        for config in configs:
            print(f"budget {budget}, {config}", file=sys.stderr, flush=True)
            if config == "local":
                result = asyncio.run(run(config, model, root, budget, None, trace))
            else:
                log = CACHE / f"llama-server-{config}-{budget}.log"
                with llama_server(args.llama_server, model, args.threads, log) as url:
                    result = asyncio.run(run(config, model, root, budget, url, trace))
            results[f"{budget}/{config}"] = {"summary": summary(result, trace), **result}
        results[f"{budget}/ratios"] = ratios(results, budget, configs)
    results["load_average_at_end"] = os.getloadavg()[0]
    text = json.dumps(results, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
