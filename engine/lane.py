"""One lane of the local engine: a llama context, its worker thread and its requests.

Every llama.cpp call for the context runs on the lane's single worker thread, requests in
order. Per request: tokenize the segments (memoized), plan checkpoints at the segment
boundaries and inside the current file, bring the live state to the longest usable prefix
(`LiveState.prepare`), prefill the rest in cancellable micro-batches that stop where
checkpoints are taken (`engine.batching.plan_prefill_stops`), then sample and stream tokens.

A warm-up runs the same steps without sampling, up to the end of its prompt (a checkpoint is
taken there), and stops between micro-batches as soon as `warm_yield` says other work waits;
what it prefilled stays live for the next request that shares the prefix.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import sys
import time
from array import array
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from engine.batching import batch_end, plan_prefill_stops
from engine.checkpoints import (
    PRIORITY_GRID,
    Checkpoint,
    CheckpointCache,
    PlannedCheckpoint,
    plan_checkpoints,
    prefix_digest,
)
from engine.config import LaneConfig
from engine.errors import ContextOverflowError, EngineError
from engine.generation import LocalGeneration
from engine.host import LlamaSession, LoadedModel, Sampler
from engine.live_state import Anchor, LiveState
from engine.params import GenerationParams
from engine.persist import StateStore
from engine.report import RequestReport
from engine.segments import Prompt, SegmentKind
from engine.stop_filter import StopFilter
from engine.tokens import TokenMemo

logger = logging.getLogger(__name__)


class _Cancelled(Exception):
    pass


def token_digest(tokens: array[int]) -> str:
    """Hex sha256 of token ids as little-endian int32 (RequestReport.prompt_digest)."""
    if sys.byteorder == "big":
        tokens = array("i", tokens)
        tokens.byteswap()
    return hashlib.sha256(tokens.tobytes()).hexdigest()


class LaneRunner:
    """One llama context, its worker thread, live state and checkpoint cache."""

    def __init__(
        self,
        config: LaneConfig,
        model: LoadedModel,
        *,
        memo: TokenMemo,
        store: StateStore | None,
        pause: Callable[[LocalGeneration], None] | None = None,
        warm_yield: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.memo = memo
        # Called between micro-batches and tokens: the background lane waits there while
        # interactive work is queued.
        self._pause = pause
        # Asked between a warm-up's micro-batches: True when other work waits (it stops then).
        self._warm_yield = warm_yield
        self.n_ctx = config.n_ctx  # what llama.cpp gave, once the context is open
        self.state = LiveState(
            model,
            CheckpointCache(config.checkpoint_budget_bytes),
            store,
            n_batch=config.n_batch,
            prompts=CheckpointCache(config.prompt_cache_bytes),
        )
        self.resume_point: int | None = None  # persisted at shutdown (see close)
        self.executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"qcn-llama-{config.name}"
        )
        self.requests = 0
        self.cancelled = 0
        self.warmups = 0
        self.warmups_cut = 0
        self.warmup_tokens = 0
        # Warm-up work since the last request, reported with the next one.
        self._warmed = (0, 0.0)

    def stats(self) -> dict[str, Any]:
        return {
            **self.state.cache.stats(),
            "requests": self.requests,
            "cancelled": self.cancelled,
            "restores": dict(self.state.restores),
            "live_tokens": len(self.state.live),
            "prompt_cache": {**self.state.prompts.stats(), "kept": self.state.kept},
            "warmups": self.warmups,
            "warmups_cut": self.warmups_cut,
            "warmup_tokens": self.warmup_tokens,
        }

    # Runs on the worker thread.
    def open(self) -> None:
        if self.state.session is None:
            self.state.session = LlamaSession(
                self.model,
                n_ctx=self.n_ctx,
                n_batch=self.config.n_batch,
                n_threads=self.config.n_threads,
                kv_cache=self.config.kv_cache,
            )
            self.n_ctx = self.state.session.n_ctx

    def close(self) -> None:
        session = self.state.session
        if session is not None:
            try:
                # The resume point: editors reopen files where they were left.
                if self.resume_point is not None:
                    self.state.persist_up_to(
                        self.resume_point,
                        self.config.persist_partials,
                        self.config.persist_partial_bytes,
                    )
            except Exception:  # shutting down: a failed write only costs the next start
                logger.exception("could not persist the resume point")
            session.close()
            self.state.session = None
        self.state.cache.clear()

    def run(self, prompt: Prompt, params: GenerationParams, gen: LocalGeneration) -> None:
        tokens, ms = self._warmed
        self._warmed = (0, 0.0)
        report = RequestReport(lane=self.config.name, warmup_tokens=tokens, warmup_ms=ms)
        error = self._guarded(lambda: self._run(prompt, params, gen, report), report)
        self.requests += 1
        if report.cancelled:
            self.cancelled += 1
        self._finish(gen, report, error)

    def warm(self, prompt: Prompt, gen: LocalGeneration) -> None:
        """Prefill `prompt` without sampling (a warm-up); see the module docstring."""
        report = RequestReport(lane=self.config.name, warmup=True)
        started = time.perf_counter()
        error = self._guarded(lambda: self._warm(prompt, gen, report), report)
        self.warmups += 1
        self.warmups_cut += report.cancelled
        self.warmup_tokens += report.prefilled_tokens
        tokens, ms = self._warmed
        self._warmed = (
            tokens + report.prefilled_tokens,
            ms + (time.perf_counter() - started) * 1000,
        )
        self._finish(gen, report, error)

    def _guarded(self, job: Callable[[], None], report: RequestReport) -> BaseException | None:
        """Run a job; a failure clears the state (the next job starts from a known one)."""
        try:
            job()
        except _Cancelled:
            report.cancelled = True
        except ContextOverflowError as exc:  # raised before the state was touched
            return exc
        except BaseException as exc:
            if not isinstance(exc, EngineError):
                logger.exception("request failed")
            self.state.clear()
            return exc
        return None

    def _finish(
        self, gen: LocalGeneration, report: RequestReport, error: BaseException | None
    ) -> None:
        report.ms["total"] = (time.perf_counter() - gen.submitted_at) * 1000
        if error is None:
            logger.debug("%s", report.summary())
        gen.finish(report, error)

    def _check(self, gen: LocalGeneration, *, warm: bool = False) -> None:
        if self._pause is not None:
            self._pause(gen)
        if gen.cancelled or (warm and self._warm_yield is not None and self._warm_yield()):
            raise _Cancelled

    def _tokenize(self, prompt: Prompt) -> tuple[array[int], list[tuple[SegmentKind, int]]]:
        tokens = array("i", [self.model.bos] if self.model.add_bos else [])
        lengths: list[tuple[SegmentKind, int]] = []
        for segment in prompt.segments:
            segment_tokens = self.memo.tokens(segment.text)
            tokens.extend(segment_tokens)
            lengths.append((segment.kind, len(segment_tokens)))
        return tokens, lengths

    def _open_and_tokenize(
        self, prompt: Prompt, gen: LocalGeneration, report: RequestReport
    ) -> tuple[array[int], list[tuple[SegmentKind, int]]]:
        """The first steps of a request or warm-up: not cancelled yet, the context open, the
        prompt's tokens (and each segment's count)."""
        if gen.cancelled:
            raise _Cancelled
        self.open()
        t0 = time.perf_counter()
        tokens, lengths = self._tokenize(prompt)
        report.prompt_tokens = len(tokens)
        report.prompt_digest = token_digest(tokens)
        report.ms["tokenize"] = (time.perf_counter() - t0) * 1000
        return tokens, lengths

    def _run(
        self, prompt: Prompt, params: GenerationParams, gen: LocalGeneration, report: RequestReport
    ) -> None:
        tokens, lengths = self._open_and_tokenize(prompt, gen, report)
        n = len(tokens)
        if n == 0:
            raise EngineError("empty prompt: nothing to condition the generation on")
        if n + params.max_tokens > self.n_ctx:
            raise ContextOverflowError(
                f"prompt of {n} tokens + max_tokens {params.max_tokens} exceeds the context "
                f"window of {self.n_ctx} tokens ({self.config.name} lane): shorten the prompt "
                "(less repository context) or raise the context length",
                prompt_tokens=n,
                max_tokens=params.max_tokens,
                n_ctx=self.n_ctx,
            )
        caching = self.config.prompt_cache
        plan = plan_checkpoints(
            lengths if caching else [],
            interval=self.config.checkpoint_interval,
            prefix_tokens=1 if self.model.add_bos else 0,
            at_end=self.config.checkpoint_at_end,
        )
        persist_at = self._persist_position(plan, n)
        # The resume point: the boundary before the text after the cursor (TAIL).
        ends = [p.pos for p in plan if p.boundary and p.kind != SegmentKind.TAIL]
        self.resume_point = (
            ends[-1] if ends and ends[-1] >= self.config.persist_min_tokens else None
        )

        t1 = time.perf_counter()
        if caching:
            start = self.state.prepare(tokens, report)
        else:
            self.state.clear()  # a fresh state: nothing restored, the whole prompt prefilled
            start = 0
        report.ms["restore"] = (time.perf_counter() - t1) * 1000
        report.reused_tokens = start

        t2 = time.perf_counter()
        self._prefill(tokens, start, plan, persist_at, gen, report)
        report.ms["prefill"] = (time.perf_counter() - t2) * 1000
        self.state.anchor = _anchor(tokens, lengths, 1 if self.model.add_bos else 0)
        self._generate(params, gen, report)

    def _warm(self, prompt: Prompt, gen: LocalGeneration, report: RequestReport) -> None:
        tokens, lengths = self._open_and_tokenize(prompt, gen, report)
        n = len(tokens)
        if not self.config.prompt_cache:
            return  # every request starts from a cleared state: nothing to warm
        if n < 2 or n >= self.n_ctx or self.state.holds(tokens):
            report.restore_kind = "append"
            report.reused_tokens = n if n < self.n_ctx else 0
            return  # nothing to do, or more than the context holds (the request will say so)
        plan = plan_checkpoints(
            lengths,
            interval=self.config.checkpoint_interval,
            prefix_tokens=1 if self.model.add_bos else 0,
            at_end=True,  # where the request that follows resumes
        )
        t1 = time.perf_counter()
        start = self.state.prepare(tokens, report)
        report.ms["restore"] = (time.perf_counter() - t1) * 1000
        report.reused_tokens = start
        t2 = time.perf_counter()
        try:
            self._prefill(tokens, start, plan, None, gen, report, warm=True)
        finally:
            report.ms["prefill"] = (time.perf_counter() - t2) * 1000

    def _persist_position(self, plan: list[PlannedCheckpoint], n: int) -> int | None:
        """End of the repository context, if it is worth persisting."""
        if self.state.store is None:
            return None
        repo_ends = [p.pos for p in plan if p.boundary and p.kind == SegmentKind.REPO]
        if repo_ends and repo_ends[-1] >= self.config.persist_min_tokens and repo_ends[-1] < n:
            return repo_ends[-1]
        return None

    def _prefill(
        self,
        tokens: array[int],
        start: int,
        plan: list[PlannedCheckpoint],
        persist_at: int | None,
        gen: LocalGeneration,
        report: RequestReport,
        *,
        warm: bool = False,
    ) -> None:
        n = len(tokens)
        cache = self.state.cache
        snapshot_at: dict[int, PlannedCheckpoint] = {}
        if self.model.needs_checkpoints:
            snapshot_at = {
                p.pos: p for p in plan if p.pos >= start and not cache.has_partial(p.pos)
            }
        planned = plan_prefill_stops(
            start,
            n,
            snapshot_at,
            self.config.n_batch,
            extra=[persist_at] if persist_at is not None and persist_at > start else [],
        )
        for pos in planned.dropped:
            del snapshot_at[pos]
        pos = start
        while True:
            gen.prompt_read(pos, n)
            self._take_snapshots(tokens, pos, snapshot_at, persist_at, report)
            if pos >= n:
                break
            self._check(gen, warm=warm)
            end = batch_end(pos, planned.stops, self.config.n_batch)
            self.state.decode(tokens[pos:end], logits_last=end == n)
            report.prefilled_tokens += end - pos
            pos = end

    def _take_snapshots(
        self,
        tokens: array[int],
        pos: int,
        snapshot_at: dict[int, PlannedCheckpoint],
        persist_at: int | None,
        report: RequestReport,
    ) -> None:
        state = self.state
        if not state.exact:
            return
        session = state.session
        assert session is not None
        planned = snapshot_at.get(pos)
        # Room first, then the copy: the budget bounds the peak (a real-size checkpoint is
        # 75 MiB).
        if planned is not None and state.cache.make_room(session.snapshot_size(partial=True)):
            data = session.snapshot(partial=True)
            if state.cache.add(Checkpoint(pos, "partial", data, planned.priority)):
                report.checkpoints_taken += 1
        if pos == persist_at and state.store is not None:
            digest = prefix_digest(tokens, pos)
            if not state.store.contains(digest, pos):
                full = session.snapshot(partial=False)
                state.store.save_async(digest, pos, full)
                # Keep it in the prompt cache too: switching back to an earlier repository
                # context (another file's ranking) then costs a memory copy.
                if self.model.needs_checkpoints:
                    state.prompts.add(Checkpoint(pos, "full", full, PRIORITY_GRID, digest))

    def _generate(
        self, params: GenerationParams, gen: LocalGeneration, report: RequestReport
    ) -> None:
        session = self.state.session
        assert session is not None
        if params.max_tokens == 0:
            return
        sampler = Sampler(
            temperature=params.temperature,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            seed=params.seed,
        )
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopFilter(params.stop)
        t_decode = time.perf_counter()
        try:
            for i in range(params.max_tokens):
                if i:
                    self._check(gen)
                token = sampler.sample(session)
                if i == 0:
                    report.ms["first_token"] = (time.perf_counter() - gen.submitted_at) * 1000
                if self.model.is_eog(token):
                    break
                report.generated_tokens += 1
                gen.token_ids.append(token)
                text, stopped = stops.push(decoder.decode(self.model.piece(token)))
                if text:
                    gen.post(text)
                if stopped:
                    return
                if i + 1 < params.max_tokens:
                    self.state.decode([token], logits_last=True)
            tail = stops.push(decoder.decode(b"", final=True))[0] + stops.flush()
            if tail:
                gen.post(tail)
        finally:
            report.ms["decode"] = (time.perf_counter() - t_decode) * 1000
            sampler.close()


def _anchor(
    tokens: array[int], lengths: list[tuple[SegmentKind, int]], prefix_tokens: int
) -> Anchor | None:
    """The anchor of a prompt: the end of its last segment up to LOCAL (the start of the
    cursor's line), and where its file part (the first segment from FILE_PREFIX on) ends."""
    pos = prefix_tokens
    file_start = anchor = None
    for kind, length in lengths:
        pos += length
        if kind >= SegmentKind.FILE_PREFIX and file_start is None:
            file_start = pos
        if SegmentKind.FILE_PREFIX <= kind <= SegmentKind.LOCAL:
            anchor = pos
    if anchor is None or file_start is None:
        return None
    return Anchor(anchor, file_start, tokens)
