"""Drive `qcn-lsp` over stdio as an editor would, typing into a real file character by character.

Uses $QCN_MODEL if set; otherwise writes the tiny generated test model into the cache directory
(`qcn-lsp doctor` finds it there). That model has RANDOM WEIGHTS: its completions are noise.
What this shows is the protocol (streamed `qcn/completionProgress`, final inline completions)
and the per-keystroke cost: latency, and how many prompt tokens the engine reused vs prefilled.
The typing goes to the server's copy of the file only: nothing is written to disk.

Exit codes: 0 done, 1 the model did not load, 2 the server failed, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.client import LanguageClient

from qcn_lsp.doctor import demo_model_path

REPO_ROOT = Path(__file__).resolve().parent.parent
TYPED = "width = len(lines) + "
EXIT_MODEL, EXIT_SERVER, EXIT_INTERRUPTED = 1, 2, 130
# Seconds for a request that does not run the model, and for the server to end once told to.
QUICK_S = 30.0
EXIT_WAIT_S = 10.0

T = TypeVar("T")


class DemoFailed(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class DemoClient(LanguageClient):
    @property
    def process(self) -> asyncio.subprocess.Process | None:
        # pygls's client keeps the server process it started here; the demo needs it to end
        # a server that does not exit when told to.
        return self._server


def shown(path: Path) -> str:
    """`path` as the user can type it from where the demo runs."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def model_path() -> tuple[Path, bool]:
    configured = os.environ.get("QCN_MODEL")
    if configured:
        return Path(configured).expanduser(), False
    from engine.testing import write_test_model

    path = demo_model_path()
    if not path.is_file():
        print(f"writing the tiny test model to {path} (once)")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_test_model(path, preset="tiny", seed=0)
    return path, True


def capabilities() -> types.ClientCapabilities:
    return types.ClientCapabilities(
        text_document=types.TextDocumentClientCapabilities(
            inline_completion=types.InlineCompletionClientCapabilities(),
            synchronization=types.TextDocumentSyncClientCapabilities(),
        ),
        window=types.WindowClientCapabilities(work_done_progress=False),
        general=types.GeneralClientCapabilities(
            position_encodings=[types.PositionEncodingKind.Utf16]
        ),
    )


async def answer(request: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """The server's answer, or DemoFailed when it errs, dies or takes longer than `timeout`."""
    try:
        return await asyncio.wait_for(request, timeout)
    except JsonRpcException as exc:
        raise DemoFailed(EXIT_SERVER, f"the server answered with an error: {exc}") from None
    except TimeoutError:
        raise DemoFailed(EXIT_SERVER, f"the server did not answer within {timeout:g} s") from None
    except RuntimeError as exc:  # pygls fails pending requests this way when the server exits
        raise DemoFailed(EXIT_SERVER, f"the server stopped: {exc}") from None


async def status(client: LanguageClient) -> dict[str, Any]:
    result = await answer(
        client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="qcn.status", arguments=[])
        ),
        QUICK_S,
    )
    if not isinstance(result, dict):
        raise DemoFailed(EXIT_SERVER, f"qcn.status answered {result!r}")
    return result


@contextlib.asynccontextmanager
async def progress_line(label: str) -> AsyncIterator[None]:
    """`label` with the seconds spent, redrawn on a terminal; printed once elsewhere."""
    if not sys.stdout.isatty():
        print(f"{label} ...", flush=True)
        yield
        return
    started = time.perf_counter()

    async def tick() -> None:
        while True:
            sys.stdout.write(f"\r{label} ... {time.perf_counter() - started:.0f} s")
            sys.stdout.flush()
            await asyncio.sleep(0.5)

    ticker = asyncio.get_running_loop().create_task(tick())
    try:
        yield
    finally:
        ticker.cancel()
        sys.stdout.write("\r\x1b[2K")  # erase the line: the row that follows replaces it
        sys.stdout.flush()


async def wait_for_engine(client: LanguageClient, model: Path) -> dict[str, Any]:
    started = time.perf_counter()
    async with progress_line(f"loading {model.name}"):
        while (engine := (await status(client))["engine"])["state"] != "ready":
            state = engine["state"]
            if "loading" not in state and "not started" not in state:
                raise DemoFailed(
                    EXIT_MODEL,
                    f"the model did not load: {state.rstrip('.')}\n"
                    "  -> unset QCN_MODEL to run the demo on the generated test model, or set "
                    "it to a Qwen3-Coder-Next .gguf;\n"
                    f"     `{shown(REPO_ROOT / '.venv/bin/qcn-lsp')} doctor --model {model}` "
                    "says what is wrong with a file",
                )
            await asyncio.sleep(0.1)
    print(
        f"engine ready in {time.perf_counter() - started:.1f} s: {engine['arch']}, "
        f"{engine['layers']} layers, hybrid={engine['hybrid']}, n_ctx={engine['nCtx']}"
    )
    return engine


def printable(text: str, noise: bool) -> str:
    """The completion in quotes, line breaks and control characters escaped; on the test model
    the replacement characters of its broken UTF-8 become `?`."""
    out = []
    for char in text:
        if noise and char == "\ufffd":
            out.append("?")
        elif char.isprintable() or char == " ":
            out.append(char)
        else:
            out.append(repr(char)[1:-1])
    return "'" + "".join(out) + "'"


def change(
    uri: str, version: int, at: types.Position, text: str
) -> types.DidChangeTextDocumentParams:
    return types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[
            types.TextDocumentContentChangePartial(range=types.Range(start=at, end=at), text=text)
        ],
    )


async def type_along(
    client: LanguageClient, streamed: list[Any], source_path: Path, noise: bool
) -> None:
    source = source_path.read_text()
    lines = source.splitlines(keepends=True)
    uri = source_path.as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=source
            )
        )
    )
    # A new line in the middle of the file, indented like its neighbour.
    row = len(lines) // 2
    while not lines[row].strip():
        row += 1
    indent = lines[row][: len(lines[row]) - len(lines[row].lstrip())]
    version = 2
    client.text_document_did_change(
        change(uri, version, types.Position(line=row, character=0), indent + "\n")
    )
    column = len(indent)
    print(
        f"\ntyping {TYPED!r} at line {row + 1} of {source_path}\n"
        "(Python's standard library; the server edits its own copy in memory, the file on disk "
        "stays as it is)\n\n"
        f"The first keystroke reads the whole prompt ({len(source):,} characters of "
        f"{source_path.name}): seconds on a CPU.\n"
        "The next ones restore a checkpoint and read only what changed (columns reused and "
        "prefill).\n"
    )
    print(f"{'typed':<24} {'answer ms':>9} {'TTFT ms':>8} {'reused':>7} {'prefill':>7}  completion")
    for n, char in enumerate(TYPED):
        version += 1
        client.text_document_did_change(
            change(uri, version, types.Position(line=row, character=column), char)
        )
        column += 1
        streamed.clear()
        t0 = time.perf_counter()
        request = client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=row, character=column),
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Automatic
                ),
            )
        )
        if n == 0:
            async with progress_line("first keystroke: reading the whole prompt"):
                result = await answer(request)
        else:
            result = await answer(request)
        ms = (time.perf_counter() - t0) * 1000
        items = result.items if isinstance(result, types.InlineCompletionList) else result
        text = items[0].insert_text if items else ""
        final = next((p for p in streamed if p.done), None)
        report = getattr(final, "report", None)
        ttft = f"{report.ms.first_token:.1f}" if report else "-"
        reused = str(report.reusedTokens) if report else "typed"
        prefilled = str(report.prefilledTokens) if report else "-"
        typed = indent.strip() + TYPED[: column - len(indent)]
        completion = printable(str(text), noise)
        print(f"{typed!r:<24} {ms:9.1f} {ttft:>8} {reused:>7} {prefilled:>7}  {completion:.50}")
    print(
        "\nreused: prompt tokens kept from the engine's state; prefill: tokens it read anew "
        "(the typed text, then the text after the cursor);\ntyped: answered from the previous "
        "completion the user is typing along, without a model call."
    )
    if noise:
        print(
            "The test model's weights are random: it writes about the same noise whatever the "
            "prompt, and `?` stands for\nbytes that are not valid UTF-8 on their own. A real "
            "model writes code there."
        )


def summary(last: dict[str, Any] | None) -> str:
    if not last:
        return "no keystroke ran the model"
    ms = last["ms"]
    return (
        f"last keystroke that ran the model: {last['promptTokens']} prompt tokens, "
        f"{last['reusedTokens']} restored from a checkpoint ({last['restoreKind']}), "
        f"{last['prefilledTokens']} read anew; first token after {ms['first_token']:.0f} ms, "
        f"answer after {ms['total']:.0f} ms"
    )


def next_steps(model: Path, generated: bool) -> str:
    init_lua = shown(REPO_ROOT / "editors" / "neovim" / "init.lua")
    example = shown(REPO_ROOT / "scripts" / "demo.py")
    qcn_lsp = shown(REPO_ROOT / ".venv" / "bin" / "qcn-lsp")
    return "\n".join(
        [
            "Next:",
            "  put qcn-lsp on PATH     make install   (~/.local/bin; or: pipx install .)",
            f"  try it in Neovim        QCN_MODEL={model} nvim -u {init_lua} {example}",
            "  set up your editor      editors/README.md (Neovim, Emacs, Helix, VS Code)",
            *(
                [
                    "  use a real model        QCN_MODEL=/path/to/Qwen3-Coder-Next-Q4_K_M.gguf make demo"
                ]
                if generated
                else []
            ),
            f"  check the installation  {qcn_lsp} doctor",
        ]
    )


async def end_server(client: DemoClient) -> str | None:
    """Shut the server down and wait for it to end; stop it if it does not. Says what went
    wrong, or None."""
    problem = None
    process = client.process
    if process is None:  # it never started
        return None
    if process.returncode is None:
        try:
            await asyncio.wait_for(client.shutdown_async(None), EXIT_WAIT_S)
            client.exit(None)
        except Exception as exc:  # whatever the reason, the server is stopped below
            problem = f"the server did not shut down cleanly ({exc or type(exc).__name__})"
    if process.returncode is None:
        try:
            await asyncio.wait_for(process.wait(), EXIT_WAIT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            problem = problem or f"the server did not exit within {EXIT_WAIT_S:g} s: stopped it"
    await client.stop()
    return problem


async def run(client: DemoClient, streamed: list[Any]) -> None:
    try:
        model, generated = model_path()
    except OSError as exc:
        raise DemoFailed(EXIT_MODEL, f"cannot write the test model: {exc}") from None
    if generated:
        print(f"model: {model} (generated test model, RANDOM WEIGHTS: the text below is noise)")
    else:
        print(f"model: {model}")
    paths = [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    env.pop("QCN_MODEL", None)
    await client.start_io(sys.executable, "-m", "qcn_lsp", "--log-level", "WARNING", env=env)
    await answer(
        client.initialize_async(
            types.InitializeParams(
                capabilities=capabilities(),
                initialization_options={
                    "model": {"path": str(model), "contextLength": 16384},
                    # One keystroke is sent per answer here, so the adaptive debounce (meant for
                    # real typing) would only add waiting to every row: it is off.
                    "completion": {"maxTokens": 16, "streamNotifications": True, "debounceMs": 0},
                },
            )
        ),
        QUICK_S,
    )
    client.initialized(types.InitializedParams())
    await wait_for_engine(client, model)
    source_path = Path(inspect.getsourcefile(textwrap) or textwrap.__file__)
    await type_along(client, streamed, source_path, noise=generated)
    print(f"\n{summary((await status(client))['lastRequest'])}.")
    print(f"\n{next_steps(model, generated)}")


async def main() -> int:
    streamed: list[Any] = []
    client = DemoClient("qcn-demo", "1")

    @client.feature("qcn/completionProgress")
    def on_progress(params: Any) -> None:
        streamed.append(params)

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def on_log(params: types.LogMessageParams) -> None:
        pass  # the server's settings report: not needed here

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def on_message(params: types.ShowMessageParams) -> None:
        print(f"server says: {params.message}")

    code = 0
    try:
        await run(client, streamed)
    except DemoFailed as failure:
        print(f"demo: {failure}", file=sys.stderr)
        code = failure.code
    finally:
        problem = await end_server(client)
    if problem is not None:
        print(f"demo: {problem}", file=sys.stderr)
        code = code or EXIT_SERVER
    return code


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        print("\ndemo: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
