"""The shared completer behind both completion flavours (popup items in
features/popup_completion.py, ghost text in features/inline_completion.py): debounce,
cancellation, typed-ahead reuse, the prompt, streaming notifications and post-processing, and
the warm-ups after a completion (what to warm: `qcn_lsp.completion_prompt`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument

from engine.backend import Backend, Generation
from engine.formats import FIM_STOPS
from engine.params import GenerationParams
from engine.report import RequestReport
from engine.segments import Prompt
from qcn_lsp import completion_logic as logic
from qcn_lsp.completion_prompt import BuiltPrompt, CompletionPrompts, CursorText, PromptSettings
from qcn_lsp.errors import RequestFailed
from qcn_lsp.services import Services
from qcn_lsp.wire import report_dict

if TYPE_CHECKING:
    from qcn_lsp.server import QcnServer

logger = logging.getLogger(__name__)

PROGRESS_METHOD = "qcn/completionProgress"
EXPERIMENTAL_KEY = "qcnCompletionProgress"
MAX_DOCUMENT_CHARS = 4_000_000
BACKEND_WAIT_S = 30.0


@dataclass
class Cursor:
    """A request's document, version and cursor, in Python string indices."""

    uri: str
    version: int | None
    position: types.Position  # as the client sent it
    source: str  # the whole document: prefix + suffix
    prefix: str
    suffix: str
    line_prefix: str
    line_suffix: str


@dataclass
class Answer:
    text: str
    reused: bool


class Completer:
    """One per server: per-document in-flight state and typing rhythm."""

    def __init__(self, server: QcnServer, services: Services) -> None:
        self.server = server
        self.services = services
        self._suggestions: dict[str, logic.Suggestion] = {}
        self._running: dict[str, asyncio.Future[None]] = {}
        self._rhythm: dict[str, logic.TypingRhythm] = {}
        self.prompts = CompletionPrompts()
        self._warmups: set[asyncio.Task[None]] = set()
        self._pause: asyncio.Task[None] | None = None

    async def complete_at(
        self, uri: str, position: types.Position, *, invoked: bool
    ) -> tuple[Cursor, Answer | None] | None:
        """The model's completion at a client position (both completion flavours).

        None for documents qcn-lsp does not complete. Automatic requests stay quiet while the
        model loads; explicit ones get the reason as a JSON-RPC error."""
        cursor = self.cursor(uri, position)
        if cursor is None:
            return None
        try:
            return cursor, await self.complete(cursor, invoked=invoked)
        except RequestFailed:
            if invoked:
                raise
            return cursor, None

    # -- request parsing ----------------------------------------------------------------------

    def cursor(self, uri: str, position: types.Position) -> Cursor | None:
        """The cursor in an open document; None for documents qcn-lsp will not complete."""
        document = self.server.workspace.text_documents.get(uri)
        if document is None:
            return None
        source = document.source
        if len(source) > MAX_DOCUMENT_CHARS or "\x00" in source:
            return None
        lines = document.lines
        if position.line < 0 or position.character < 0:
            raise JsonRpcInvalidParams(f"position {position} is negative")
        if position.line > len(lines) or (position.line == len(lines) and position.character):
            raise JsonRpcInvalidParams(
                f"position line {position.line} is beyond the document's {len(lines)} lines"
            )
        line = lines[position.line] if position.line < len(lines) else ""
        line_text = line.rstrip("\r\n")
        units = document.position_codec.client_num_units(line_text)
        if position.character > units:
            raise JsonRpcInvalidParams(
                f"position character {position.character} is beyond the end of line "
                f"{position.line} ({units} units)"
            )
        column = _server_column(document, position)
        offset = sum(len(text) for text in lines[: position.line]) + column
        return Cursor(
            uri=uri,
            version=document.version,
            position=position,
            source=source,
            prefix=source[:offset],
            suffix=source[offset:],
            line_prefix=line_text[:column],
            line_suffix=line_text[column:],
        )

    def document_version(self, uri: str) -> int | None:
        document = self.server.workspace.text_documents.get(uri)
        return None if document is None else document.version

    # -- the request --------------------------------------------------------------------------

    async def complete(self, cursor: Cursor, *, invoked: bool) -> Answer | None:
        """The completion text for `cursor`, or None when there is nothing to offer."""
        if self._pause is not None:
            self._pause.cancel()  # the user is typing: no pause
        if not invoked and logic.inside_word(cursor.line_prefix, cursor.line_suffix):
            return None
        reused = self._typed_ahead(cursor)
        if reused is not None:
            return Answer(reused, reused=True)
        # Typed-ahead reuse of a generation still running: wait for it instead of a new one.
        running = self._running.get(cursor.uri)
        previous = self._suggestions.get(cursor.uri)
        if running is not None and previous is not None and not previous.done:
            typed = cursor.prefix[len(previous.prefix) :]
            if (
                cursor.prefix.startswith(previous.prefix)
                and cursor.suffix == previous.suffix
                and (previous.text.startswith(typed) or typed.startswith(previous.text))
            ):
                await asyncio.wait({running})
                reused = self._typed_ahead(cursor)
                if reused is not None:
                    return Answer(reused, reused=True)
        rhythm = self._rhythm.setdefault(cursor.uri, logic.TypingRhythm())
        if not invoked:
            rhythm.record()
        delay = logic.debounce_s(
            self.server.settings.completion.debounce_ms, rhythm, cursor.line_prefix, invoked
        )
        if delay:
            await asyncio.sleep(delay)
            if self.document_version(cursor.uri) != cursor.version:
                return None  # the user typed on: a newer request follows
        return await self._generate(cursor)

    def _typed_ahead(self, cursor: Cursor) -> str | None:
        suggestion = self._suggestions.get(cursor.uri)
        if suggestion is None or not suggestion.done:
            return None
        return suggestion.typed_ahead(cursor.prefix, cursor.suffix)

    async def _generate(self, cursor: Cursor) -> Answer | None:
        settings = self.server.settings.completion
        backend = await self.services.backend_ready(BACKEND_WAIT_S)
        # The repository context opens the prompt: a prompt built without it, while the index
        # is still being built, would be read again in full by the next request.
        await self.services.index_settled(settings.index_wait_ms / 1000)
        if self.document_version(cursor.uri) != cursor.version:
            return None
        params = GenerationParams(
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            stop=tuple(FIM_STOPS),
        )
        built = self.prompts.build(
            CursorText(to_fs_path(cursor.uri) or cursor.uri, cursor.prefix, cursor.suffix),
            backend,
            self.services.index_if_ready(),
            self._prompt_settings(),
        )
        prompt = built.prompt
        suggestion = logic.Suggestion(cursor.prefix, cursor.suffix)
        self._suggestions[cursor.uri] = suggestion
        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running[cursor.uri] = finished
        # The same key cancels this document's previous generation inside the engine.
        generation = backend.stream(prompt, params, key=cursor.uri)
        stream = self._streams_progress()
        started = time.perf_counter()
        raw = ""
        try:
            async for delta in generation:
                raw += delta
                if self.document_version(cursor.uri) != cursor.version:
                    generation.cancel()
                    return None  # stale: the document moved on
                shown = logic.streamed_text(raw, cursor.line_prefix, cursor.suffix)
                if shown != suggestion.text:
                    suggestion.text = shown
                    if stream:
                        self._notify(cursor, shown, done=False)
                if logic.block_end(raw, cursor.line_prefix) is not None:
                    # Everything from here on would be cut off: stop the model.
                    generation.cancel()
                    await _stopped(generation)
                    break
        except BaseException:
            # $/cancelRequest (pygls cancels this task) or an engine error: stop the model too.
            generation.cancel()
            raise
        finally:
            if self._running.get(cursor.uri) is finished:
                del self._running[cursor.uri]
            finished.set_result(None)
        suggestion.text = logic.post_process(raw, cursor.line_prefix, cursor.suffix)
        suggestion.done = True
        report = generation.report
        if report is not None:
            self.services.last_report = report
            logger.info(
                "completion %s in %.0f ms: %s",
                cursor.uri,
                (time.perf_counter() - started) * 1000,
                report.summary(),
            )
        if stream:
            self._notify(cursor, suggestion.text, done=True, report=report)
        self._after_completion(cursor, built, suggestion.text, backend)
        return Answer(suggestion.text, reused=False) if suggestion.text else None

    # -- warm-ups ---------------------------------------------------------------------------

    def _prompt_settings(self) -> PromptSettings:
        settings = self.server.settings
        return PromptSettings(
            budget_tokens=settings.context.budget_tokens,
            suffix_chars=settings.completion.suffix_chars,
            max_tokens=settings.completion.max_tokens,
        )

    def _after_completion(
        self, cursor: Cursor, built: BuiltPrompt, text: str, backend: Backend
    ) -> None:
        """A completion finished: warm what the next request will need, unless a newer one is
        already on its way; and re-rank the repository context if the user then pauses."""
        if self._running or self.document_version(cursor.uri) != cursor.version:
            return
        prompt = self.prompts.warmup(built, text, backend, self._prompt_settings())
        if prompt is not None:
            self._warm(backend, prompt, cursor.uri)
        if self._pause is not None:
            self._pause.cancel()
        self._pause = asyncio.ensure_future(self._at_pause(backend, cursor))

    async def _at_pause(self, backend: Backend, cursor: Cursor) -> None:
        await asyncio.sleep(logic.TYPING_PAUSE_S)
        if self._running or self.document_version(cursor.uri) != cursor.version:
            return
        try:
            prompt = self.prompts.at_pause(backend, self._prompt_settings())
        except Exception:  # the index went away meanwhile (settings reload): nothing to warm
            logger.debug("re-ranking at a pause failed", exc_info=True)
            return
        if prompt is not None:
            self._warm(backend, prompt, cursor.uri)

    def _warm(self, backend: Backend, prompt: Prompt, key: str) -> None:
        try:
            generation = backend.warm(prompt, key=key)
        except Exception:  # a backend closing or reloading: a warm-up is only a bonus
            logger.debug("warm-up not started", exc_info=True)
            return
        task = asyncio.ensure_future(self._warmup(generation))
        self._warmups.add(task)
        task.add_done_callback(self._warmups.discard)

    async def _warmup(self, generation: Generation) -> None:
        try:
            await generation.text()
        except asyncio.CancelledError:
            pass  # preempted by a request (or the server shuts down): what it did stays
        except Exception:
            logger.debug("warm-up failed", exc_info=True)
        report = generation.report
        if report is not None:
            self.services.last_warmup = report
            logger.debug("warm-up: %s", report.summary())

    # -- streaming ----------------------------------------------------------------------------

    def _streams_progress(self) -> bool:
        if self.server.settings.completion.stream_notifications:
            return True
        experimental = self.server.client_capabilities.experimental
        return isinstance(experimental, Mapping) and bool(experimental.get(EXPERIMENTAL_KEY))

    def _notify(
        self, cursor: Cursor, text: str, *, done: bool, report: RequestReport | None = None
    ) -> None:
        params: dict[str, Any] = {
            "uri": cursor.uri,
            "version": cursor.version,
            "position": {"line": cursor.position.line, "character": cursor.position.character},
            "text": text,
            "done": done,
        }
        if report is not None:
            params["report"] = report_dict(report)
        self.server.protocol.notify(PROGRESS_METHOD, params)


async def _stopped(generation: Generation) -> None:
    """Wait until a generation this request cancelled has stopped (its report is then set)."""
    try:
        async for _ in generation:
            pass
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the request itself was cancelled meanwhile


def _server_column(document: TextDocument, position: types.Position) -> int:
    """The Python string column of a client position (negotiated utf-16 / utf-8 / utf-32)."""
    return document.position_codec.position_from_client_units(document.lines, position).character
