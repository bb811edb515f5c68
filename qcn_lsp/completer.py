"""The shared completer behind both completion flavours (popup items in
features/popup_completion.py, ghost text in features/inline_completion.py): one run per
document state shared by every request for it, debounce, cancellation, typed-ahead reuse,
the answer deadline, the prompt, streaming notifications and post-processing, and the warm-ups
after a completion (what to warm: `qcn_lsp.completion_prompt`).
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
from engine.errors import EngineError
from engine.formats import FIM_STOPS
from engine.params import GenerationParams
from engine.report import RequestReport
from engine.segments import Prompt
from qcn_lsp import completion_logic as logic
from qcn_lsp.completion_prompt import BuiltPrompt, CompletionPrompts, CursorText, PromptSettings
from qcn_lsp.errors import RequestFailed
from qcn_lsp.services import Services
from qcn_lsp.slow_start import SlowStart, reading_text
from qcn_lsp.text_sync import VERSION_AT_ARRIVAL, line_content, line_end_of, open_text_document
from qcn_lsp.wire import report_dict

if TYPE_CHECKING:
    from qcn_lsp.server import QcnServer

logger = logging.getLogger(__name__)

PROGRESS_METHOD = "qcn/completionProgress"
EXPERIMENTAL_KEY = "qcnCompletionProgress"
MAX_DOCUMENT_CHARS = 4_000_000
# How long a run (not a request: requests have their deadline) waits for the model to load.
MODEL_WAIT_S = 600.0
# A request cancelled while it waits stops its run after this long, unless the client asked
# again at the same state meanwhile (VS Code cancels an inline request and re-asks at once).
REASK_GRACE_S = 0.3


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
    line_end: str  # the document's line end, which completions use too
    document: TextDocument  # the open document (a closed and reopened one is another)


@dataclass
class Answer:
    text: str
    typed_ahead: bool  # the rest of the previous completion, along which the user typed


class CompletionRun:
    """The model's completion for one document state, shared by every request for it.

    Its task (debounce, model and index waits, the stream) belongs to the Completer, not to a
    request: a request that stops waiting (its deadline passed, the client cancelled it) leaves
    it running, so that the next request at that state finds the answer. Its phase says what it
    is waiting on: `debounce`, `model`, `index`, `reading` (the prompt), `writing`, `done`.
    """

    def __init__(self, cursor: Cursor) -> None:
        self.cursor = cursor
        self.suggestion = logic.Suggestion(cursor.prefix, cursor.suffix)
        self.phase = "debounce"
        self.generation: Generation | None = None
        self.waiters = 0
        self.task: asyncio.Task[str | None] | None = None

    @property
    def done(self) -> bool:
        return self.task is not None and self.task.done()

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


class Completer:
    """One per server: each document's latest completion run and typing rhythm."""

    def __init__(self, server: QcnServer, services: Services) -> None:
        self.server = server
        self.services = services
        self.slow_start = SlowStart(server)
        self._runs: dict[str, CompletionRun] = {}
        self._rhythm: dict[str, logic.TypingRhythm] = {}
        self.prompts = CompletionPrompts()
        self._warmups: set[asyncio.Task[None]] = set()
        self._pause: asyncio.Task[None] | None = None

    async def complete_at(
        self, uri: str, position: types.Position, *, invoked: bool
    ) -> tuple[Cursor, Answer | None] | None:
        """The model's completion at a client position (both completion flavours).

        None for documents qcn-lsp does not complete. Answers within `completion.timeoutMs`:
        automatic requests then get None, invoked ones a RequestFailed saying why (also when
        the model cannot be used at all)."""
        deadline = (
            asyncio.get_running_loop().time() + self.server.settings.completion.timeout_ms / 1000
        )
        cursor = self.cursor(uri, position)
        if cursor is None:
            return None
        try:
            return cursor, await self.complete(cursor, invoked=invoked, deadline=deadline)
        except RequestFailed:
            if invoked:
                raise
            return cursor, None

    # -- request parsing ----------------------------------------------------------------------

    def cursor(self, uri: str, position: types.Position) -> Cursor | None:
        """The cursor in an open document; None for documents qcn-lsp will not complete."""
        document = open_text_document(self.server.workspace, uri)
        if document is None:
            return None
        source = document.source
        if len(source) > MAX_DOCUMENT_CHARS or "\x00" in source:
            return None
        lines = document.lines
        if position.line < 0 or position.character < 0:
            raise JsonRpcInvalidParams(f"position {position} is negative")
        if VERSION_AT_ARRIVAL.get() not in (None, document.version):
            return None  # typed on since it was asked: its position is for an older text
        if position.line > len(lines) or (position.line == len(lines) and position.character):
            raise JsonRpcInvalidParams(
                f"position line {position.line} is beyond the document's {len(lines)} lines"
            )
        line = lines[position.line] if position.line < len(lines) else ""
        units = document.position_codec.client_num_units(line_content(line))
        if position.character > units:
            raise JsonRpcInvalidParams(
                f"position character {position.character} is beyond the end of line "
                f"{position.line} ({units} units)"
            )
        at = document.position_from_client_units(position)
        line_text = line_content(lines[at.line]) if at.line < len(lines) else ""
        offset = document.offset_at_server_position(at)
        return Cursor(
            uri=uri,
            version=document.version,
            position=position,
            source=source,
            prefix=source[:offset],
            suffix=source[offset:],
            line_prefix=line_text[: at.character],
            line_suffix=line_text[at.character :],
            line_end=line_end_of(source),
            document=document,
        )

    def document_version(self, uri: str) -> int | None:
        document = open_text_document(self.server.workspace, uri)
        return None if document is None else document.version

    # -- the request --------------------------------------------------------------------------

    async def complete(self, cursor: Cursor, *, invoked: bool, deadline: float) -> Answer | None:
        """The completion text for `cursor`, or None when there is nothing to offer (yet)."""
        if self._pause is not None:
            self._pause.cancel()  # the user is typing: no pause
        if not invoked and logic.inside_word(cursor.line_prefix, cursor.line_suffix):
            return None
        run = self._runs.get(cursor.uri)
        if run is not None and run.cursor.document is not cursor.document:
            run = None  # made before the document was closed and opened again
        if (
            run is not None
            and run.suggestion.same_state(cursor.prefix, cursor.suffix)
            and (not run.done or run.suggestion.done)
        ):
            # Asked again at the same state (a popup next to pending ghost text, a re-query
            # after a cancel, a repeat): the same run answers, running or finished. (One that
            # was stopped, went stale or failed does not.)
            text = await self._answer(run, invoked, deadline)
            return Answer(text, typed_ahead=False) if text else None
        if run is not None and run.suggestion.along(cursor.prefix, cursor.suffix):
            # Typed along a completion, maybe still being written: its rest answers.
            if not run.done and not await self._wait(run, deadline):
                self._late(run, invoked)
                return None
            rest = run.suggestion.typed_ahead(cursor.prefix, cursor.suffix)
            if run.suggestion.done and rest is not None:
                return Answer(rest, typed_ahead=True)
        run = self._start(cursor, invoked)
        text = await self._answer(run, invoked, deadline)
        return Answer(text, typed_ahead=False) if text else None

    def _start(self, cursor: Cursor, invoked: bool) -> CompletionRun:
        """A new run for `cursor`, superseding the document's previous one."""
        previous = self._runs.get(cursor.uri)
        if previous is not None and not previous.done:
            previous.stop()  # its requests are answered empty
        rhythm = self._rhythm.setdefault(cursor.uri, logic.TypingRhythm())
        if not invoked:
            rhythm.record()
        delay = logic.debounce_s(
            self.server.settings.completion.debounce_ms, rhythm, cursor.line_prefix, invoked
        )
        run = CompletionRun(cursor)
        run.task = asyncio.get_running_loop().create_task(self._run(run, delay))
        run.task.add_done_callback(_retrieve)
        self._runs[cursor.uri] = run
        # Forget the runs of closed documents (each holds its document's text).
        for uri, other in list(self._runs.items()):
            if open_text_document(self.server.workspace, uri) is not other.cursor.document:
                other.stop()
                del self._runs[uri]
        return run

    async def _answer(self, run: CompletionRun, invoked: bool, deadline: float) -> str | None:
        """`run`'s text once it finished by `deadline`; else what `_late` says."""
        if not await self._wait(run, deadline):
            self._late(run, invoked)
            return None
        assert run.task is not None
        if run.task.cancelled():
            return None  # superseded by a newer run of the document
        return run.task.result()  # RequestFailed and engine errors are raised here

    async def _wait(self, run: CompletionRun, deadline: float) -> bool:
        """Wait for `run` until `deadline`; whether it finished. A request cancelled while it
        waits stops the run, unless another request for it comes within REASK_GRACE_S."""
        assert run.task is not None
        loop = asyncio.get_running_loop()
        run.waiters += 1
        try:
            # `wait`, not awaiting the task: a request that stops waiting leaves the run be.
            done, _ = await asyncio.wait({run.task}, timeout=max(0.0, deadline - loop.time()))
        except asyncio.CancelledError:
            loop.call_later(REASK_GRACE_S, _stop_if_unwatched, run)
            raise
        finally:
            run.waiters -= 1
        return bool(done)

    def _say_loading(self) -> None:
        self.slow_start.say_once(
            "model", "qcn-lsp: the model is still loading; completions start as soon as it is ready"
        )

    def _late(self, run: CompletionRun, invoked: bool) -> None:
        """A request whose run did not finish in time: the run goes on, the user learns why
        (invoked requests: RequestFailed)."""
        if run.phase == "model":
            reason = self.services.backend_status()
        elif run.phase == "reading":
            counts = run.generation.prompt_progress() if run.generation is not None else None
            reason = reading_text(counts)
            self.slow_start.say_once(
                "reading",
                f"qcn-lsp: {reason} (the repository context and the file); completions appear "
                "once it is read, and later ones reuse it",
            )
        elif run.phase == "index":
            reason = "waiting for the workspace index"
        elif run.phase == "debounce":
            reason = "waiting for typing to pause (completion.debounceMs)"
        else:
            reason = "the model is still writing"
        logger.info("completion %s not ready in time: %s", run.cursor.uri, reason)
        if invoked:
            raise RequestFailed(f"qcn-lsp: {reason}; ask again in a moment")

    async def _run(self, run: CompletionRun, delay: float) -> str | None:
        """Debounce, wait for the model (and an index being built), stream the completion."""
        cursor = run.cursor
        settings = self.server.settings.completion
        if delay:
            await asyncio.sleep(delay)
            if self.document_version(cursor.uri) != cursor.version:
                return None  # the user typed on: a newer request follows
        run.phase = "model"
        backend = await self.services.backend_ready(MODEL_WAIT_S, self._say_loading)
        # The repository context opens the prompt: a prompt built without it, while the index
        # is still being built, would be read again in full by the next request.
        run.phase = "index"
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
        self.services.last_context = [path for path, _ in built.repo[1]]
        suggestion = run.suggestion
        # The same key cancels this document's previous generation inside the engine.
        try:
            generation = backend.stream(prompt, params, key=cursor.uri)
        except EngineError as exc:
            self.services.check_serving()
            raise RequestFailed(f"qcn-lsp: {exc}") from exc
        run.generation = generation
        run.phase = "reading"
        self.slow_start.reading(generation)
        stream = self._streams_progress()
        started = time.perf_counter()
        raw = ""
        try:
            async for delta in generation:
                if run.phase == "reading":
                    run.phase = "writing"
                    self.slow_start.read(generation)
                raw += delta
                if self.document_version(cursor.uri) != cursor.version:
                    generation.cancel()
                    return None  # stale: the document moved on
                shown = logic.streamed_text(raw, cursor.line_prefix, cursor.suffix, cursor.line_end)
                if shown != suggestion.text:
                    suggestion.text = shown
                    if stream:
                        self._notify(cursor, shown, done=False)
                if logic.block_end(logic.clean_text(raw), cursor.line_prefix) is not None:
                    # Everything from here on would be cut off: stop the model.
                    generation.cancel()
                    await _stopped(generation)
                    break
        except EngineError as exc:
            # A remote server that died or refused: one message for the user (automatic
            # requests answer nothing), the error for an explicit request.
            generation.cancel()
            self.services.check_serving()
            self.services.request_failed(exc)
            raise RequestFailed(f"qcn-lsp: {exc}") from exc
        except BaseException:
            # $/cancelRequest or superseded (a newer run, in the completer or inside the
            # engine), or shutdown cancelled the generation: stop the model too; during
            # shutdown the answer says so.
            generation.cancel()
            self.services.check_serving()
            raise
        finally:
            run.phase = "done"
            self.slow_start.read(generation)
        self.services.request_succeeded()
        suggestion.text = logic.post_process(
            raw, cursor.line_prefix, cursor.suffix, cursor.line_end
        )
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
        self._after_completion(run, built, backend)
        return suggestion.text or None

    # -- warm-ups ---------------------------------------------------------------------------

    def _prompt_settings(self) -> PromptSettings:
        settings = self.server.settings
        return PromptSettings(
            budget_tokens=settings.context.budget_tokens,
            suffix_chars=settings.completion.suffix_chars,
            max_tokens=settings.completion.max_tokens,
        )

    def _busy(self, but: CompletionRun | None = None) -> bool:
        """Whether a completion run other than `but` is on its way."""
        return any(other is not but and not other.done for other in self._runs.values())

    def _after_completion(self, run: CompletionRun, built: BuiltPrompt, backend: Backend) -> None:
        """A completion finished: warm what the next request will need, unless a newer one is
        already on its way; and re-rank the repository context if the user then pauses."""
        cursor = run.cursor
        if self._busy(but=run) or self.document_version(cursor.uri) != cursor.version:
            return
        text = run.suggestion.text
        prompt = self.prompts.warmup(built, text, backend, self._prompt_settings())
        if prompt is not None:
            self._warm(backend, prompt, cursor.uri)
        if self._pause is not None:
            self._pause.cancel()
        self._pause = asyncio.ensure_future(self._at_pause(backend, cursor))

    async def _at_pause(self, backend: Backend, cursor: Cursor) -> None:
        await asyncio.sleep(logic.TYPING_PAUSE_S)
        if self._busy() or self.document_version(cursor.uri) != cursor.version:
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


def _stop_if_unwatched(run: CompletionRun) -> None:
    if run.waiters == 0 and not run.done:
        run.stop()


def _retrieve(task: asyncio.Task[str | None]) -> None:
    """Fetch the outcome of a run nobody waited for to the end (an answer that came late)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        if isinstance(exc, RequestFailed):
            logger.info("completion run: %s", exc)
        else:
            logger.error("completion run failed", exc_info=exc)
