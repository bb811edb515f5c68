"""How long stopping the server takes while it prefills, as editors and a bare client see it.

    PYTHONPATH=. python bench/shutdown.py [--trials 5] [--functions 1500] [--delay-ms 300]

Each trial opens one generated Python file of `--functions` small functions (about 12
tokens per line with the small test model) in a fresh server, waits for the model, asks
for a completion at the end of the file and, `--delay-ms` later (the prefill running), stops:

- `raw`: a bare JSON-RPC peer sends `shutdown` (reply time, and what the completion got),
  then `exit` (time until the process has ended);
- `stdin closed`: the peer closes stdin after one completion, without `shutdown` (time until
  the process has ended; whether the state reached the cache);
- `pytest-lsp`: the same `shutdown` through pytest-lsp's client;
- `neovim`: `:qall!` in Neovim 0.7 with editors/neovim (time until Neovim has exited);
- `eglot`: `eglot-shutdown` in Emacs 28 + eglot 1.9 (its duration; eglot kills the server
  once `exit` is sent).

A baseline is the same script run in another checkout (it drives that checkout's server).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lsprotocol import types  # noqa: E402
from pygls.exceptions import JsonRpcException  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities  # noqa: E402

from tests.editors.quit import eglot_quit, neovim_quit  # noqa: E402
from tests.editors.tools import quitting_project  # noqa: E402
from tests.lsp.helpers import RawLspProcess, inline_params, server_env, until_ready  # noqa: E402

SETTINGS: dict[str, Any] = {
    "completion": {"maxTokens": 8, "debounceMs": 0},
    "context": {"budgetTokens": 0},
    "model": {"contextLength": 32768},
}


def ensure_model(cache_dir: Path) -> Path:
    from engine.testing import write_test_model

    path = cache_dir / "small.gguf"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        write_test_model(path, preset="small", seed=0)
    return path


def raw_server(model: Path, tmp: Path, functions: int) -> tuple[RawLspProcess, str, int]:
    path, line = quitting_project(tmp / "project", functions)
    server = RawLspProcess()
    options = {**SETTINGS, "model": {**SETTINGS["model"], "path": str(model)}}
    options["cache"] = {"dir": str(tmp / "cache")}
    server.request(
        "initialize",
        {
            "processId": None,
            "rootUri": path.parent.as_uri(),
            "capabilities": {},
            "initializationOptions": options,
        },
    )
    server.send({"method": "initialized", "params": {}})
    uri = path.as_uri()
    server.open_document(uri, path.read_text())
    while True:
        state = server.request("workspace/executeCommand", {"command": "qcn.status"})
        if state["result"]["engine"]["state"] == "ready":
            return server, uri, line
        time.sleep(0.1)


def completion(uri: str, line: int) -> dict[str, Any]:
    return {
        "textDocument": {"uri": uri},
        "position": {"line": line, "character": 0},
        "context": {"triggerKind": 1},
    }


def answer_kind(answer: dict[str, Any]) -> str:
    return "result" if "result" in answer else answer["error"]["message"]


def raw_trial(model: Path, tmp: Path, functions: int, delay_ms: int) -> dict[str, Any]:
    server, uri, line = raw_server(model, tmp, functions)
    pending = server.send_request("textDocument/inlineCompletion", completion(uri, line))
    time.sleep(delay_ms / 1000)
    started = time.perf_counter()
    shutdown = server.send_request("shutdown", None)
    server.response(shutdown)
    reply_s = time.perf_counter() - started
    answer = answer_kind(server.response(pending))
    server.send({"method": "exit"})
    started = time.perf_counter()
    server.proc.wait(timeout=120)
    return {"reply_s": reply_s, "exit_s": time.perf_counter() - started, "completion": answer}


def stdin_closed_trial(model: Path, tmp: Path, functions: int, delay_ms: int) -> dict[str, Any]:
    server, uri, line = raw_server(model, tmp, functions)
    server.request("textDocument/inlineCompletion", completion(uri, line))
    assert server.proc.stdin is not None
    started = time.perf_counter()
    server.proc.stdin.close()
    code = server.proc.wait(timeout=120)
    persisted = any((tmp / "cache" / "state").glob("**/*.val"))
    return {"exit_s": time.perf_counter() - started, "code": code, "persisted": persisted}


async def pytest_lsp_trial(model: Path, tmp: Path, functions: int, delay_ms: int) -> dict[str, Any]:
    path, line = quitting_project(tmp / "project", functions)
    options = {**SETTINGS, "model": {**SETTINGS["model"], "path": str(model)}}
    options["cache"] = {"dir": str(tmp / "cache")}
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "qcn_lsp", "--log-level", "WARNING"],
        server_env=server_env(),
    )
    client = await config.start()
    assert isinstance(client, LanguageClient)
    await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual_studio_code"),
            root_uri=path.parent.as_uri(),
            initialization_options=options,
        )
    )
    uri = path.as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=path.read_text()
            )
        )
    )
    await until_ready(client)
    pending = asyncio.ensure_future(
        client.text_document_inline_completion_async(
            inline_params(uri, types.Position(line=line, character=0))
        )
    )
    await asyncio.sleep(delay_ms / 1000)
    started = time.perf_counter()
    await client.shutdown_async(None)
    result: dict[str, Any] = {"reply_s": time.perf_counter() - started}
    try:
        await pending
        result["completion"] = "result"
    except JsonRpcException as exc:
        result["completion"] = exc.message
    client.exit(None)
    await client.stop()
    return result


def editor_trial(
    run: Callable[..., dict[str, Any]], program: str, key: str
) -> Callable[[Path, Path, int, int], dict[str, Any]]:
    def trial(model: Path, tmp: Path, functions: int, delay_ms: int) -> dict[str, Any]:
        report = run(program, tmp, model, functions=functions, delay_ms=delay_ms, settings=SETTINGS)
        return {
            key: report[key],
            "server_gone": report["server_gone"],
            "completion": report.get("completion", report.get("completion_error")),
        }

    return trial


def summary(samples: list[float]) -> str:
    return f"median {statistics.median(samples):.3f} s, max {max(samples):.3f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF (default: the small test model)")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--functions", type=int, default=1500)
    parser.add_argument("--delay-ms", type=int, default=300)
    parser.add_argument("--skip", default="", help="comma-separated kinds to leave out")
    args = parser.parse_args()
    model = args.model or ensure_model(ROOT / ".cache" / "bench")
    kinds: dict[str, Callable[[Path, Path, int, int], dict[str, Any]]] = {
        "raw": raw_trial,
        "stdin closed": stdin_closed_trial,
        "pytest-lsp": lambda *a: asyncio.run(pytest_lsp_trial(*a)),
    }
    if nvim := shutil.which("nvim"):
        kinds["neovim"] = editor_trial(neovim_quit, nvim, "quit_seconds")
    if emacs := shutil.which("emacs"):
        kinds["eglot"] = editor_trial(eglot_quit, emacs, "shutdown_seconds")
    skip = set(filter(None, args.skip.split(",")))
    print(f"model {model}, {args.functions} functions, stop {args.delay_ms} ms after the request")
    for name, trial in kinds.items():
        if name in skip:
            continue
        results = []
        for _ in range(args.trials):
            with tempfile.TemporaryDirectory() as tmp:
                results.append(trial(model, Path(tmp), args.functions, args.delay_ms))
        columns = sorted({key for result in results for key in result})
        parts = []
        for key in columns:
            values = [result[key] for result in results if key in result]
            if all(isinstance(v, float) for v in values):
                parts.append(f"{key}: {summary(values)}")
            else:
                parts.append(f"{key}: {sorted(map(str, set(map(str, values))))}")
        print(f"{name:13s} " + "; ".join(parts), flush=True)


if __name__ == "__main__":
    main()
