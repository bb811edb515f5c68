"""One model run per document state, whoever asks and however often; answers in bounded time.

The real server and engine on the tiny model. How often the model ran is read from
`qcn.status` (the interactive lane's `requests`); what the model wrote is noise.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from tests.lsp.helpers import (
    RawLspProcess,
    inline_params,
    lsp_session,
    open_document,
    popup_params,
    status,
    until_ready,
    until_status,
)

SOURCE = "import os\n\n\ndef area(width, height):\n    return width * height\n\n\nx = \n"
CURSOR = types.Position(line=7, character=4)  # after "x = ": no word before the cursor


def options(model: Path, **completion: Any) -> dict[str, Any]:
    return {
        "model": {"path": str(model), "contextLength": 32768},
        "completion": {"maxTokens": 8, "debounceMs": 0, "timeoutMs": 120_000, **completion},
        "cache": {"dir": str(model.parent / "cache")},
    }


def inline_text(answer: Any) -> str:
    assert isinstance(answer, types.InlineCompletionList), answer
    return answer.items[0].insert_text if answer.items else ""


def popup_text(answer: Any) -> str:
    assert isinstance(answer, types.CompletionList), answer
    if not answer.items:
        return ""
    edit = answer.items[0].text_edit
    assert isinstance(edit, types.TextEdit)
    return edit.new_text  # the word before the cursor (none here) + the completion


async def model_runs(client: LanguageClient) -> tuple[int, int]:
    """(runs, cancelled runs) of the interactive lane so far."""
    lane = (await status(client))["engine"]["stats"]["interactive"]
    return lane["requests"], lane["cancelled"]


def big_document(lines: int) -> tuple[str, types.Position]:
    """About 27 tokens a line before the cursor: a prompt that takes the engine a while."""
    filler = "".join(f"alpha_{i} = compute({i}, 'alpha')\n" for i in range(lines))
    return filler + SOURCE, types.Position(line=CURSOR.line + lines, character=CURSOR.character)


async def test_asking_again_at_the_same_state_runs_the_model_once(
    tiny_model: Path, tmp_path: Path
) -> None:
    async with lsp_session(initialization_options=options(tiny_model)) as (client, _):
        await until_ready(client)
        uri = (tmp_path / "again.py").as_uri()
        open_document(client, uri, SOURCE)
        first = inline_text(
            await client.text_document_inline_completion_async(inline_params(uri, CURSOR))
        )
        runs = await model_runs(client)
        # A repeat, the same request triggered automatically, and the popup at that spot.
        again = inline_text(
            await client.text_document_inline_completion_async(inline_params(uri, CURSOR))
        )
        automatic = inline_text(
            await client.text_document_inline_completion_async(
                inline_params(uri, CURSOR, invoked=False)
            )
        )
        popup = popup_text(await client.text_document_completion_async(popup_params(uri, CURSOR)))
        assert again == automatic == popup == first
        assert await model_runs(client) == runs


async def test_popup_and_ghost_text_at_once_both_get_the_text(
    tiny_model: Path, tmp_path: Path
) -> None:
    """VS Code's defaults: typing a trigger character opens the popup while the inline request
    for the same spot is pending. One run answers both, with the same text."""
    async with lsp_session(initialization_options=options(tiny_model)) as (client, _):
        await until_ready(client)
        texts = []
        for tag in "abcde":  # a random-weight model writes nothing at some spots
            uri = (tmp_path / f"both_{tag}.py").as_uri()
            open_document(client, uri, f"# {tag}\n{SOURCE}")
            cursor = types.Position(line=CURSOR.line + 1, character=CURSOR.character)
            runs, _ = await model_runs(client)
            inline = asyncio.ensure_future(
                client.text_document_inline_completion_async(
                    inline_params(uri, cursor, invoked=False)
                )
            )
            popup = await client.text_document_completion_async(popup_params(uri, cursor, " "))
            ghost = inline_text(await inline)
            assert popup_text(popup) == ghost
            assert (await model_runs(client))[0] == runs + 1
            texts.append(ghost)
            if ghost:
                break
        assert any(texts), f"no spot got text: {texts}"


async def test_a_cancelled_request_asked_again_keeps_its_run(
    tiny_model: Path, tmp_path: Path
) -> None:
    """VS Code cancels a pending inline request and asks again at once for the same spot: the
    second request gets the first one's run, which goes on."""
    async with lsp_session(initialization_options=options(tiny_model)) as (client, _):
        await until_ready(client)
        uri = (tmp_path / "reask.py").as_uri()
        text, cursor = big_document(300)
        open_document(client, uri, text)
        runs, cancelled = await model_runs(client)
        request = client.protocol.send_request(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, cursor), msg_id="first-ask"
        )
        await asyncio.sleep(0.2)  # the engine is reading the prompt
        client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="first-ask"))
        again = await client.text_document_inline_completion_async(inline_params(uri, cursor))
        assert isinstance(again, types.InlineCompletionList)
        with pytest.raises(JsonRpcException) as refused:
            await asyncio.wrap_future(request)
        assert refused.value.code == -32800  # the client did cancel this one
        assert await model_runs(client) == (runs + 1, cancelled)


async def test_a_slow_first_prompt_answers_in_time_says_why_and_goes_on(
    tiny_model: Path, tmp_path: Path
) -> None:
    """The first prompt reads everything: an automatic request is answered empty within
    `completion.timeoutMs`, an invoked one with the reason; the user is told once, with
    `$/progress` while the prompt is read; the run goes on and answers the next request."""
    settings = options(tiny_model, timeoutMs=100)
    async with lsp_session(initialization_options=settings) as (client, _):
        await until_ready(client)
        uri = (tmp_path / "slow.py").as_uri()
        text, cursor = big_document(400)
        open_document(client, uri, text)
        answer = await client.text_document_inline_completion_async(
            inline_params(uri, cursor, invoked=False)
        )
        assert isinstance(answer, types.InlineCompletionList) and not answer.items
        with pytest.raises(JsonRpcException, match="reading the prompt") as invoked:
            await client.text_document_inline_completion_async(inline_params(uri, cursor))
        assert invoked.value.code == -32803
        told = [m.message for m in client.messages if "reading the prompt" in m.message]
        assert len(told) == 1 and "tokens" in told[0], told

        state = await until_status(
            client, lambda s: s["engine"]["stats"]["interactive"]["requests"] >= 1, tries=2400
        )
        last = state["lastRequest"]
        assert last["cancelled"] is False and last["promptTokens"] > 10_000, last
        # The finished run answers at once, without the model.
        done = await client.text_document_inline_completion_async(inline_params(uri, cursor))
        assert isinstance(done, types.InlineCompletionList)
        assert (await model_runs(client))[0] == 1
        # Said once: later waits stay quiet.
        assert len([m for m in client.messages if "reading the prompt" in m.message]) == 1
        reading = [
            reports
            for reports in client.progress_reports.values()
            if getattr(reports[0], "title", None) == "qcn-lsp: reading repository context"
        ]
        if last["ms"]["prefill"] > 1000:  # long enough for the progress to be seen
            [reports] = reading
            counts = [r.message for r in reports if isinstance(r, types.WorkDoneProgressReport)]
            assert counts and all(c.endswith(" tokens") for c in counts), counts
            assert isinstance(reports[-1], types.WorkDoneProgressEnd)


async def test_the_first_completion_while_the_model_loads_says_so_once(
    tiny_model: Path, tmp_path: Path
) -> None:
    async with lsp_session(initialization_options=options(tiny_model)) as (client, _):
        uri = (tmp_path / "early.py").as_uri()
        open_document(client, uri, SOURCE)
        # Right after `initialized`: the model is still loading.
        first = await client.text_document_inline_completion_async(
            inline_params(uri, CURSOR, invoked=False)
        )
        second = await client.text_document_inline_completion_async(
            inline_params(uri, CURSOR, invoked=False)
        )
        assert isinstance(first, types.InlineCompletionList)
        assert isinstance(second, types.InlineCompletionList)
        loading = [m.message for m in client.messages if "still loading" in m.message]
        assert loading == [
            "qcn-lsp: the model is still loading; completions start as soon as it is ready"
        ]


def test_expected_outcomes_are_one_log_line_not_a_traceback(tmp_path: Path) -> None:
    server = RawLspProcess("--log-level", "INFO", stderr=subprocess.PIPE)
    try:
        server.initialize()
        uri = (tmp_path / "a.py").as_uri()
        server.open_document(uri, "x")
        position = {"line": 0, "character": 1}
        invoked = {
            "textDocument": {"uri": uri},
            "position": position,
            "context": {"triggerKind": 1},
        }
        refused = server.request("textDocument/inlineCompletion", invoked)
        assert refused["error"]["code"] == -32803  # no model configured
        forged = server.request("codeAction/resolve", {"title": "x", "data": {"uri": 5}})
        assert forged["error"]["code"] == -32803
        beyond = {**invoked, "position": {"line": 9, "character": 0}}
        assert server.request("textDocument/inlineCompletion", beyond)["error"]["code"] == -32602
    finally:
        server.close()
    assert server.proc.stderr is not None
    text = server.proc.stderr.read().decode()
    assert "Traceback" not in text and " ERROR " not in text, text
    assert "answered with error -32803: qcn-lsp: no model configured" in text, text
