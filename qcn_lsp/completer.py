"""The shared completer behind both completion flavours (popup items in
features/popup_completion.py, ghost text in features/inline_completion.py): one run per
document state shared by every request for it, debounce, cancellation, typed-ahead reuse,
the answer deadline, the prompt, streaming notifications and post-processing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument

from engine.backend import Backend, Generation
from engine.formats import FIM_STOPS, LOCAL_WINDOW_CHARS, clip_suffix, fim_prompt
from engine.params import GenerationParams
from engine.report import RequestReport
from engine.segments import Prompt
from qcn_lsp import completion_logic as logic
from qcn_lsp.errors import RequestFailed
from qcn_lsp.services import Services
from qcn_lsp.slow_start import SlowStart, reading_text
from qcn_lsp.text_sync import line_content, line_end_of, open_text_document
from qcn_lsp.wire import report_dict

if TYPE_CHECKING:
    from context.assemble import ContextAssembler
    from context.index import RepoIndex
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
# Characters sampled to estimate the tokenizer's characters per token, tokens kept free for
# the FIM markers and the path, and the share of the estimated room the file prefix may fill.
SAMPLE_CHARS = 4_000
PROMPT_MARGIN_TOKENS = 64
UTF8_MAX_BYTES = 4
PREFIX_FILL = 0.9


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
        self._chars_per_token: dict[str, float] = {}
        # One assembler per index: it keeps its last ranking so the repo prefix stays stable.
        self._assembler: ContextAssembler | None = None
        self._assembler_index: RepoIndex | None = None

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
        prompt = self._prompt(cursor, backend, params.max_tokens)
        suggestion = run.suggestion
        # The same key cancels this document's previous generation inside the engine.
        generation = backend.stream(prompt, params, key=cursor.uri)
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
        except BaseException:
            # Superseded (a newer run, in the completer or inside the engine), or an engine
            # error: stop the model too.
            generation.cancel()
            raise
        finally:
            run.phase = "done"
            self.slow_start.read(generation)
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
        return suggestion.text or None

    def _prompt(self, cursor: Cursor, backend: Backend, max_tokens: int) -> Prompt:
        path = to_fs_path(cursor.uri) or cursor.uri
        n_ctx = backend.info().n_ctx
        settings = self.server.settings
        # The repository context gets at most half the window; the current file what is left
        # after the answer, the suffix and the FIM markers. Characters per token are sampled
        # from the text before the cursor, so the file prefix is cut before the engine would
        # refuse the prompt as too long.
        repo_budget = min(settings.context.budget_tokens, n_ctx // 2)
        repo_name, files = self._repo_context(cursor, path, backend.count_tokens, repo_budget)
        repo_tokens = repo_budget if files else 0
        suffix_chars = settings.completion.suffix_chars
        suffix = clip_suffix(cursor.suffix, suffix_chars)
        room = n_ctx - max_tokens - repo_tokens - PROMPT_MARGIN_TOKENS
        max_prefix_chars: int | None = None
        # Every token covers at least one UTF-8 byte (a character is at most 4): most files
        # surely fit, and only longer ones pay for sampling the tokenizer on the keystroke path.
        if UTF8_MAX_BYTES * (len(cursor.prefix) + len(suffix)) > room:
            # Sampled once per document: a budget that moved with every keystroke would move
            # the cut, and the engine would re-read the whole file.
            chars_per_token = self._chars_per_token.get(cursor.uri)
            if chars_per_token is None:
                sample = cursor.prefix[-SAMPLE_CHARS:] or "x"
                chars_per_token = len(sample) / max(1, backend.count_tokens(sample))
                self._chars_per_token[cursor.uri] = chars_per_token
            prefix_room = room - suffix_chars / chars_per_token  # not len(suffix): see above
            max_prefix_chars = max(0, int(prefix_room * chars_per_token * PREFIX_FILL))
        return fim_prompt(
            repo_name,
            files,
            path,
            cursor.prefix,
            cursor.suffix,
            local_window_chars=LOCAL_WINDOW_CHARS,
            suffix_chars=suffix_chars,
            max_prefix_chars=max_prefix_chars,
        )

    def _repo_context(
        self, cursor: Cursor, path: str, count_tokens: Callable[[str], int], budget: int
    ) -> tuple[str, list[tuple[str, str]]]:
        """Ranked repository files for the cursor; none while the index is not built."""
        index = self.services.index_if_ready()
        if index is None or budget <= 0:
            return Path(path).parent.name, []
        if self._assembler is None or self._assembler_index is not index:
            from context.assemble import ContextAssembler
            from context.cost import RenderedCost
            from engine.formats import repo_file_text, repo_header_text

            cost = RenderedCost(count_tokens, repo_header_text, repo_file_text)
            self._assembler = ContextAssembler(index, cost)
            self._assembler_index = index
        # The context package counts lines at `\n`, as tree-sitter does.
        line = cursor.prefix.count("\n")
        column = len(cursor.prefix) - (cursor.prefix.rfind("\n") + 1)
        context = self._assembler.assemble(path, cursor.source, line, column, budget)
        return context.repo_name, [(f.path, f.content) for f in context.files]

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
