"""Completions end to end: the real server process, the real engine on the tiny model.

Random weights write noise: these tests check protocol shapes, streaming, reuse and
cancellation, never the quality of the text.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from tests.lsp.helpers import (
    inline_params,
    insert,
    lsp_session,
    open_document,
    record_progress,
    status,
    until_ready,
)

SOURCE = "import os\n\n\ndef area(width, height):\n    return width * height\n\n\nx = \n"
CURSOR = types.Position(line=7, character=4)  # after "x = "


def options(model: Path, **completion: Any) -> dict[str, Any]:
    return {
        "model": {"path": str(model), "contextLength": 2048},
        "completion": {"maxTokens": 8, "debounceMs": 0, "timeoutMs": 120_000, **completion},
        "cache": {"dir": str(model.parent / "cache")},
    }


@pytest.fixture
def uri(tmp_path: Path) -> str:
    path = tmp_path / "shapes.py"
    path.write_text(SOURCE)
    return path.as_uri()


async def test_inline_completion_streams_and_answers(
    tiny_model: Path, uri: str, tmp_path: Path
) -> None:
    (tmp_path / "geometry.py").write_text(
        "def perimeter(width, height):\n    return 2 * (width + height)\n"
    )
    async with lsp_session(
        initialization_options=options(tiny_model, streamNotifications=True), workspace=tmp_path
    ) as (client, result):
        assert result.capabilities.inline_completion_provider is not None
        assert result.capabilities.completion_provider is not None
        received = record_progress(client)
        open_document(client, uri, SOURCE)
        await until_ready(client)
        for _ in range(100):
            if (await status(client))["index"]["state"].startswith("ready"):
                break
            await asyncio.sleep(0.1)
        answer = await client.text_document_inline_completion_async(inline_params(uri, CURSOR))
        assert isinstance(answer, types.InlineCompletionList)
        assert received, "no qcn/completionProgress notification arrived"
        final = received[-1]
        assert final.done is True and final.uri == uri and final.version == 1
        assert final.report.promptTokens > 0
        # Streamed texts are post-processed as they grow: ghost text never shrinks.
        streamed = [n.text for n in received[:-1]]
        assert all(n.done is False for n in received[:-1])
        assert all(final.text.startswith(text) for text in streamed), (streamed, final.text)
        if answer.items:
            assert answer.items[0].insert_text == final.text
            assert answer.items[0].range == types.Range(start=CURSOR, end=CURSOR)
        state = await status(client)
        assert state["lastRequest"]["promptTokens"] == final.report.promptTokens
        assert state["engine"]["hybrid"] is True


async def test_popup_completion_without_streaming_neovim(tiny_model: Path, uri: str) -> None:
    async with lsp_session(profile="neovim", initialization_options=options(tiny_model)) as (
        client,
        _result,
    ):
        received = record_progress(client)
        open_document(client, uri, SOURCE)
        await until_ready(client)
        answer = await client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri), position=CURSOR
            )
        )
        assert isinstance(answer, types.CompletionList)
        for item in answer.items:
            assert isinstance(item.text_edit, types.TextEdit)
            assert item.text_edit.range.end == CURSOR
        assert received == []  # not opted in


async def test_typed_ahead_reuses_the_previous_completion(tiny_model: Path, uri: str) -> None:
    async with lsp_session(initialization_options=options(tiny_model, maxTokens=12)) as (
        client,
        _,
    ):
        open_document(client, uri, SOURCE)
        await until_ready(client)
        first = await client.text_document_inline_completion_async(inline_params(uri, CURSOR))
        assert isinstance(first, types.InlineCompletionList)
        text = first.items[0].insert_text if first.items else ""
        if len(text) < 2:
            pytest.skip(f"the random model wrote too little to type ahead: {text!r}")
        requests = (await status(client))["engine"]["stats"]["interactive"]["requests"]
        insert(client, uri, 2, CURSOR, text[0])
        after = types.Position(line=CURSOR.line, character=CURSOR.character + 1)
        second = await client.text_document_inline_completion_async(inline_params(uri, after))
        assert isinstance(second, types.InlineCompletionList)
        assert second.items[0].insert_text == text[1:]
        state = await status(client)
        assert state["engine"]["stats"]["interactive"]["requests"] == requests  # no model call


BLOCK = "def area(width, height):\n    if width:\n        \n    return 0\n"


async def test_the_model_stops_where_the_completion_leaves_the_block(
    tiny_model: Path, uri: str
) -> None:
    max_tokens = 64
    settings = options(tiny_model, maxTokens=max_tokens, streamNotifications=True)
    async with lsp_session(initialization_options=settings) as (client, _):
        received = record_progress(client)
        await until_ready(client)
        cut_short = []
        # Random weights: some spots write a less indented line within 64 tokens, some do not.
        for version, tag in enumerate("abcdefgh", start=1):
            text = f"# {tag * 3}\n{BLOCK}"
            open_document(client, uri, text, version=version)
            cursor = types.Position(line=3, character=8)  # the empty line inside `if`
            await client.text_document_inline_completion_async(inline_params(uri, cursor))
            final = received[-1]
            assert final.done is True
            assert all(
                len(line) - len(line.lstrip()) >= 8
                for line in final.text.split("\n")[1:]
                if line.strip()
            ), final.text
            if final.report.cancelled:
                cut_short.append(final.report.generatedTokens)
            client.text_document_did_close(
                types.DidCloseTextDocumentParams(
                    text_document=types.TextDocumentIdentifier(uri=uri)
                )
            )
        assert cut_short, "no spot left the block"
        assert all(tokens < max_tokens for tokens in cut_short), cut_short


def big_document(tag: str) -> tuple[str, types.Position]:
    """About 20K tokens of code before the cursor: prefilling it takes the tiny model a second
    or more, long enough to supersede or cancel a request while the engine works on it."""
    filler = "".join(f"{tag}_{i} = compute({i}, '{tag}')\n" for i in range(700))
    return filler + SOURCE, types.Position(line=CURSOR.line + 700, character=CURSOR.character)


async def test_superseded_and_cancelled_requests(
    tiny_model: Path, uri: str, tmp_path: Path
) -> None:
    settings = options(tiny_model, maxTokens=48)
    settings["model"]["contextLength"] = 32768
    async with lsp_session(initialization_options=settings) as (client, _):
        text, cursor = big_document("alpha")
        open_document(client, uri, text)
        await until_ready(client)
        slow = asyncio.ensure_future(
            client.text_document_inline_completion_async(inline_params(uri, cursor))
        )
        await asyncio.sleep(0.3)
        # The user types on while the engine is still prefilling: the newer request cancels the
        # older one inside the engine, and the old answer, now stale, must not show.
        insert(client, uri, 2, cursor, "(")
        after = types.Position(line=cursor.line, character=cursor.character + 1)
        newer = await client.text_document_inline_completion_async(inline_params(uri, after))
        assert isinstance(newer, types.InlineCompletionList)
        # Superseded, not cancelled by the client: an empty answer, never -32800.
        old = await slow
        assert isinstance(old, types.InlineCompletionList) and not old.items, old
        stats = (await status(client))["engine"]["stats"]["interactive"]
        assert stats["cancelled"] >= 1, stats
        # $/cancelRequest reaches the engine: the server answers RequestCancelled (-32800)
        # and keeps answering. (Sent by hand: cancelling a client future trips pygls #621.)
        other_uri = (tmp_path / "other.py").as_uri()
        other_text, other_cursor = big_document("beta")
        open_document(client, other_uri, other_text)
        request = client.protocol.send_request(
            types.TEXT_DOCUMENT_INLINE_COMPLETION,
            inline_params(other_uri, other_cursor),
            msg_id="slow-1",
        )
        await asyncio.sleep(0.3)
        client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="slow-1"))
        with pytest.raises(JsonRpcException) as cancelled:
            await asyncio.wrap_future(request)
        assert cancelled.value.code == -32800
        for _ in range(40):  # the engine reports the cancellation once its thread stopped
            stats = (await status(client))["engine"]["stats"]["interactive"]
            if stats["cancelled"] >= 2:
                break
            await asyncio.sleep(0.05)
        assert stats["cancelled"] >= 2, stats
        again = await client.text_document_inline_completion_async(inline_params(uri, after))
        assert isinstance(again, types.InlineCompletionList)
        state = await status(client)
        assert state["engine"]["state"] == "ready"


async def test_bad_positions_and_unknown_documents(tiny_model: Path, uri: str) -> None:
    async with lsp_session(initialization_options=options(tiny_model)) as (client, _):
        open_document(client, uri, SOURCE)
        beyond = types.Position(line=500, character=0)
        with pytest.raises(JsonRpcException, match="beyond"):
            await client.text_document_inline_completion_async(inline_params(uri, beyond))
        past_end = types.Position(line=0, character=99)
        with pytest.raises(JsonRpcException, match="beyond"):
            await client.text_document_inline_completion_async(inline_params(uri, past_end))
        unopened = await client.text_document_inline_completion_async(
            inline_params("file:///nowhere/else.py", CURSOR)
        )
        assert unopened is None
        # Inside a word, automatic completion waits; explicit invocation would not.
        inside = types.Position(line=0, character=8)  # "import o|s"
        answer = await client.text_document_inline_completion_async(
            inline_params(uri, inside, invoked=False)
        )
        assert answer is None or not answer.items


async def test_model_change_takes_effect_without_restart(tiny_model: Path, uri: str) -> None:
    from engine.testing import write_test_model

    other = write_test_model(tiny_model.parent / "tiny-seed1.gguf", preset="tiny", seed=1)
    async with lsp_session(initialization_options=options(tiny_model)) as (client, _):
        open_document(client, uri, SOURCE)
        assert (await until_ready(client))["engine"]["model"] == str(tiny_model)
        # VS Code pulls settings: the notification is a hint to ask again.
        changed = options(tiny_model)
        changed["model"]["path"] = str(other)
        client.set_configuration({"qcn": changed})
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
        for _ in range(240):
            state = await status(client)
            if state["engine"].get("model") == str(other):
                break
            await asyncio.sleep(0.25)
        else:
            raise AssertionError(f"model never switched: {state['engine']}")
        answer = await client.text_document_inline_completion_async(inline_params(uri, CURSOR))
        assert isinstance(answer, types.InlineCompletionList)


async def test_no_model_configured_is_a_clear_error(uri: str) -> None:
    async with lsp_session() as (client, _):
        open_document(client, uri, SOURCE)
        with pytest.raises(JsonRpcException, match="no model configured"):
            for _ in range(40):
                await client.text_document_inline_completion_async(inline_params(uri, CURSOR))
                await asyncio.sleep(0.1)
        assert "no model configured" in (await status(client))["engine"]["state"]


async def test_a_file_longer_than_the_context_window_is_cut_to_fit(
    tiny_model: Path, uri: str
) -> None:
    settings = options(tiny_model)
    settings["model"]["contextLength"] = 1024
    async with lsp_session(initialization_options=settings) as (client, _):
        text, cursor = big_document("gamma")  # about 20x the window
        open_document(client, uri, text)
        await until_ready(client)
        answer = await client.text_document_inline_completion_async(inline_params(uri, cursor))
        assert isinstance(answer, types.InlineCompletionList)
        last = (await status(client))["lastRequest"]
        assert 0 < last["promptTokens"] <= 1024 - 8, last
