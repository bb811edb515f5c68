"""LocalEngine: an in-process GGUF backend with a checkpoint cache for hybrid models.

Every llama.cpp call for a context runs on that context's single worker thread. Two lanes:

- "interactive" (completions) and "background" (refactors, chat) each get their own llama
  context on the shared weights, their own worker thread and their own checkpoint cache. Why
  not interleave both on one context: switching between two prompts on one hybrid context means
  restoring a recurrent snapshot (and usually trimming and re-reading attention KV) at every
  switch, and a long background prefill would sit between a keystroke and its completion. A
  second context costs only its KV memory (it defaults to a smaller window), and the
  background worker pauses between micro-batches and tokens while interactive work is queued,
  so on a CPU the two never compete for cores.
- Within a lane, requests run in order; `stream(..., key=k)` cancels the previous stream of the
  same key, which stops within one token or one prefill micro-batch.

Per request (see `_LaneRunner._prepare`): longest common token prefix with the live state;
a pure append decodes only the new tokens; otherwise the nearest usable checkpoint at or before
the divergence is restored (partial recurrent snapshot + attention trim, a full snapshot in RAM,
or a persisted one from disk) and only the rest is prefilled; with none, the state is cleared.
The last prefill micro-batch is shaped like a plain prefill's (`final_batch_rule`), which makes
every output token-identical to a fresh full prefill of the same tokens.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.backend import Lane, ModelInfo
from engine.checkpoints import (
    PRIORITY_STABLE,
    Checkpoint,
    CheckpointCache,
    PlannedCheckpoint,
    plan_checkpoints,
    prefix_digest,
)
from engine.errors import ContextOverflowError, EngineError
from engine.host import LlamaSession, LoadedModel, Sampler, StateBytes
from engine.params import GenerationParams
from engine.persist import StateStore
from engine.report import RequestReport
from engine.segments import Prompt, SegmentKind

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    model_path: str | os.PathLike[str]
    n_ctx: int = 0  # 0: the model's training context
    n_threads: int | None = None  # None: one per available core
    n_gpu_layers: int = 0
    checkpoint_interval: int = 256
    checkpoint_memory_mb: float = 1024
    prefill_chunk: int = 256  # tokens per micro-batch: cancellation granularity during prefill
    background_n_ctx: int | None = None  # None: min(n_ctx, 32768)
    background_checkpoint_memory_mb: float | None = None  # None: a quarter of the main budget
    state_dir: str | os.PathLike[str] | None = None  # None: no persisted repository state
    persist_min_tokens: int = 1024
    persist_partials: int = 8  # recurrent-state checkpoints persisted with the resume point
    state_cache_bytes: int = 16 << 30
    token_memo_entries: int = 64


class _TokenMemo:
    """Segment text -> tokens, LRU. Keyed by the text itself: a dict lookup hashes it once per
    string object (CPython caches str hashes) and compares only on a hash hit."""

    def __init__(self, model: LoadedModel, entries: int) -> None:
        self._model = model
        self._entries = entries
        self._memo: OrderedDict[str, array[int]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def tokens(self, text: str) -> array[int]:
        with self._lock:
            found = self._memo.get(text)
            if found is not None:
                self._memo.move_to_end(text)
                self.hits += 1
                return found
        tokens = self._model.tokenize(text)
        with self._lock:
            self.misses += 1
            self._memo[text] = tokens
            while len(self._memo) > self._entries:
                self._memo.popitem(last=False)
        return tokens


# Chunk size of llama.cpp's chunked Gated DeltaNet kernel (src/models/delta-net-base.cpp).
DELTANET_CHUNK = 64


def _final_batch_class(size: int) -> int:
    """Measured on qwen3next with this llama.cpp: the logits of a prefill are bitwise the same
    for every split of the prompt into micro-batches *as long as the last micro-batch falls in
    the same class*: one token (autoregressive kernel), a multiple of the DeltaNet chunk (no
    padding), or anything else (padded last chunk). Across classes they differ by up to ~6e-4,
    enough to flip a greedy near-tie. Batch size and thread count do not matter otherwise."""
    if size == 1:
        return 1
    return 2 if size % DELTANET_CHUNK == 0 else 3


def final_batch_ok(n: int, size: int) -> bool:
    """Does a last micro-batch of `size` tokens match a plain prefill of n tokens?"""
    remainder = n % DELTANET_CHUNK
    return _final_batch_class(size) == _final_batch_class(remainder or DELTANET_CHUNK)


def final_batch_rule(n: int) -> tuple[int, int]:
    """(where a plain prefill's last micro-batch starts, the latest start that still lets this
    prefill end with a micro-batch of the same class). Splitting there keeps every output
    token-identical to a fresh full prefill of the same tokens (see _final_batch_class)."""
    remainder = n % DELTANET_CHUNK
    if remainder == 0:
        return n - DELTANET_CHUNK, n - DELTANET_CHUNK
    if remainder == 1:
        return n - 1, n - 1
    return n - remainder, n - 2


def common_prefix_len(a: array[int], b: array[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    left = np.frombuffer(a, dtype=np.int32, count=n)
    right = np.frombuffer(b, dtype=np.int32, count=n)
    diff = np.flatnonzero(left != right)
    return int(diff[0]) if diff.size else n


class _StopFilter:
    """Holds back text that might be the start of a stop sequence."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""

    def push(self, text: str) -> tuple[str, bool]:
        buffer = self._held + text
        # Generation ends where the first stop string is complete, whatever the tokenization:
        # (end, start) of each stop's first occurrence, earliest end first.
        found = [(i + len(s), i) for s in self._stops if (i := buffer.find(s)) >= 0]
        if found:
            self._held = ""
            return buffer[: min(found)[1]], True
        keep = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(buffer)), keep, -1):
                if buffer.endswith(stop[:k]):
                    keep = k
                    break
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held


class LocalGeneration:
    """The asyncio side of one request; the worker thread feeds it via call_soon_threadsafe."""

    def __init__(self, loop: asyncio.AbstractEventLoop, lane: Lane) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._cancelled = threading.Event()
        self._finished = threading.Event()
        self._final: BaseException | None = None
        self._done = False
        self._report: RequestReport | None = None
        self.lane = lane
        self.token_ids: list[int] = []  # generated token ids, EOG excluded (tests, logs)
        self.submitted_at = time.perf_counter()

    # -- consumer side (event loop) --
    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        if self._done:
            raise self._final or StopAsyncIteration()
        kind, payload = await self._queue.get()
        if kind == "delta":
            return str(payload)
        self._done = True
        if kind == "error":
            self._final = payload
        elif self._report is not None and self._report.cancelled:
            self._final = asyncio.CancelledError("generation cancelled")
        raise self._final or StopAsyncIteration()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def report(self) -> RequestReport | None:
        return self._report

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    async def text(self) -> str:
        return "".join([delta async for delta in self])

    # -- producer side (worker thread) --
    def _post(self, kind: str, payload: Any) -> None:
        # RuntimeError: the loop is closed, nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, payload))

    def _finish(self, report: RequestReport | None, error: BaseException | None) -> None:
        self._report = report
        self._finished.set()
        if error is not None:
            self._post("error", error)
        else:
            self._post("end", None)


class _Cancelled(Exception):
    pass


class _LaneRunner:
    """One llama context, its worker thread, live tokens and checkpoint cache."""

    def __init__(
        self,
        name: Lane,
        model: LoadedModel,
        *,
        n_ctx: int,
        n_batch: int,
        n_threads: int,
        checkpoint_interval: int,
        checkpoint_budget: int,
        store: StateStore | None,
        persist_min_tokens: int,
        persist_partials: int,
        memo: _TokenMemo,
        checkpoint_at_end: bool,
        pause: Callable[[threading.Event], None] | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.n_threads = n_threads
        self.interval = checkpoint_interval
        self.cache = CheckpointCache(checkpoint_budget)
        self.store = store
        self.persist_min_tokens = persist_min_tokens
        self.persist_partials = persist_partials
        self.memo = memo
        self.checkpoint_at_end = checkpoint_at_end
        self._pause = pause
        self.session: LlamaSession | None = None
        self.live: array[int] = array("i")
        # Whether the recurrent state at len(live) is bitwise what a plain prefill of `live`
        # gives (see _batch_end): false after a one-token micro-batch, e.g. generated tokens.
        self.exact = True
        self.resume_point: int | None = None  # persisted at shutdown (see _persist_resume_point)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"qcn-llama-{name}")
        self.requests = 0
        self.cancelled = 0
        self.restores: dict[str, int] = {}

    # Runs on the worker thread.
    def open(self) -> None:
        if self.session is None:
            self.session = LlamaSession(
                self.model, n_ctx=self.n_ctx, n_batch=self.n_batch, n_threads=self.n_threads
            )
            self.n_ctx = self.session.n_ctx

    def close(self) -> None:
        if self.session is not None:
            try:
                self._persist_resume_point()
            except Exception:  # shutting down: a failed write only costs the next start
                logger.exception("could not persist the resume point")
            self.session.close()
            self.session = None
        self.cache.clear()

    def run(self, prompt: Prompt, params: GenerationParams, gen: LocalGeneration) -> None:
        report = RequestReport(lane=self.name)
        error: BaseException | None = None
        try:
            self._run(prompt, params, gen, report)
        except _Cancelled:
            report.cancelled = True
            self.cancelled += 1
        except ContextOverflowError as exc:  # raised before the state was touched
            error = exc
        except BaseException as exc:
            error = exc
            if not isinstance(exc, EngineError):
                logger.exception("request failed")
            self._reset_state()
        report.ms["total"] = (time.perf_counter() - gen.submitted_at) * 1000
        self.requests += 1
        if error is None:
            logger.debug("%s", report.summary())
        gen._finish(report, error)

    def _reset_state(self) -> None:
        """After a failure mid-request, start the next one from a known-empty state."""
        if self.session is not None:
            self.session.clear()
        self._set_live(array("i"))

    def _check(self, gen: LocalGeneration) -> None:
        if self._pause is not None:
            self._pause(gen._cancelled)
        if gen.cancelled:
            raise _Cancelled

    def _run(
        self, prompt: Prompt, params: GenerationParams, gen: LocalGeneration, report: RequestReport
    ) -> None:
        if gen.cancelled:
            raise _Cancelled
        self.open()
        session = self.session
        assert session is not None
        t0 = time.perf_counter()
        tokens = array("i", [self.model.bos] if self.model.add_bos else [])
        lengths: list[tuple[SegmentKind, int]] = []
        for segment in prompt.segments:
            segment_tokens = self.memo.tokens(segment.text)
            tokens.extend(segment_tokens)
            lengths.append((segment.kind, len(segment_tokens)))
        n = len(tokens)
        report.prompt_tokens = n
        report.ms["tokenize"] = (time.perf_counter() - t0) * 1000
        if n == 0:
            raise EngineError("empty prompt: nothing to condition the generation on")
        if n + params.max_tokens > self.n_ctx:
            raise ContextOverflowError(
                f"prompt of {n} tokens + max_tokens {params.max_tokens} exceeds the context "
                f"window of {self.n_ctx} tokens ({self.name} lane): shorten the prompt "
                "(less repository context) or raise the context length",
                prompt_tokens=n,
                max_tokens=params.max_tokens,
                n_ctx=self.n_ctx,
            )
        plan = plan_checkpoints(
            lengths,
            interval=self.interval,
            prefix_tokens=1 if self.model.add_bos else 0,
            at_end=self.checkpoint_at_end,
        )
        persist_at = self._persist_position(plan, n)
        # The resume point: the boundary before the text after the cursor (TAIL).
        ends = [p.pos for p in plan if p.boundary and p.kind != SegmentKind.TAIL]
        self.resume_point = ends[-1] if ends and ends[-1] >= self.persist_min_tokens else None

        t1 = time.perf_counter()
        start = self._prepare(tokens, report)
        report.ms["restore"] = (time.perf_counter() - t1) * 1000
        report.reused_tokens = start

        t2 = time.perf_counter()
        self._prefill(tokens, start, plan, persist_at, gen, report)
        report.ms["prefill"] = (time.perf_counter() - t2) * 1000
        self._generate(params, gen, report)

    def _persist_resume_point(self) -> None:
        """At shutdown, persist the state up to the cursor of the last request.

        Editors reopen files where they were left: after a restart the first completion then
        restores repository context, file prefix and local window from disk at once.
        """
        pos, session = self.resume_point, self.session
        if self.store is None or session is None or pos is None or pos > len(self.live):
            return
        digest = prefix_digest(self.live, pos)
        if self.store.contains(digest, pos):
            return
        if self.model.needs_checkpoints:
            checkpoint = self.cache.partial_at(pos)
            if checkpoint is None or not session.restore(checkpoint.data, partial=True):
                return
        if not session.trim(pos):
            return
        self._set_live(self.live[:pos])
        self.store.save_async(digest, pos, session.snapshot(partial=False)).result()
        # A few recurrent-state checkpoints before the cursor go with it: after a restart, a
        # cursor elsewhere in the file resumes from the nearest of them, not from the end of the
        # repository context.
        for checkpoint in self._checkpoints_to_persist(pos):
            self.store.save_async(
                prefix_digest(self.live, checkpoint.pos),
                checkpoint.pos,
                checkpoint.data,
                parent=(pos, digest),
            )
        self.store.flush()

    def _checkpoints_to_persist(self, pos: int) -> list[Checkpoint]:
        """Up to `persist_partials` partial checkpoints before `pos`, spread evenly."""
        assert self.store is not None
        positions = [
            p
            for p in self.cache.partial_positions()
            if p < pos and not self.store.contains(prefix_digest(self.live, p), p)
        ]
        if not positions or self.persist_partials <= 0:
            return []
        step = max(1, len(positions) // self.persist_partials)
        chosen = positions[::-1][::step][: self.persist_partials]  # nearest the cursor first
        return [c for p in chosen if (c := self.cache.partial_at(p)) is not None]

    def _persist_position(self, plan: list[PlannedCheckpoint], n: int) -> int | None:
        """End of the repository context, if it is worth persisting."""
        if self.store is None:
            return None
        repo_ends = [p.pos for p in plan if p.boundary and p.kind == SegmentKind.REPO]
        if repo_ends and repo_ends[-1] >= self.persist_min_tokens and repo_ends[-1] < n:
            return repo_ends[-1]
        return None

    def _set_live(self, new_live: array[int]) -> None:
        """Replace the live tokens after a clear or a restore (both leave an exact state);
        partial checkpoints past the common prefix become stale."""
        self.cache.keep_prefix(common_prefix_len(self.live, new_live))
        self.live = new_live
        self.exact = True

    def _prepare(self, tokens: array[int], report: RequestReport) -> int:
        """Bring the context to a state that holds tokens[:start]; return start."""
        session = self.session
        assert session is not None
        n = len(tokens)
        while True:
            lcp = common_prefix_len(self.live, tokens)
            max_start = final_batch_rule(n)[1]
            appendable = (
                lcp == len(self.live)
                and lcp <= max_start
                and self.exact
                and self._can_start_at(lcp, n)
            )
            target = min(lcp, max_start)
            partial = None
            if appendable:
                floor = lcp
            elif self.model.needs_checkpoints:
                partial = self.cache.best_partial(target)
                while partial is not None and not self._can_start_at(partial.pos, n):
                    partial = self.cache.best_partial(partial.pos - 1)
                floor = partial.pos if partial else 0
            else:
                floor = target  # a plain transformer trims its KV cache anywhere
            live_before = len(self.live)
            restored = self._restore_full_beyond(tokens, floor, report)
            if restored is not None:
                return restored
            if len(self.live) != live_before:
                continue  # a rejected snapshot cleared the state: decide again
            break
        if appendable:
            report.restore_kind = "append" if lcp else "none"
            return lcp
        if not self.model.needs_checkpoints and session.trim(target):
            self.live = self.live[:target]
            self.exact = True
            report.restore_kind, report.restored_from = "partial", target
            return target
        if partial is not None:
            restored = self._restore_partial(partial, report)
            if restored is not None:
                return restored
        session.clear()
        self._set_live(array("i"))
        report.restore_kind = "none"
        return 0

    def _restore_full_beyond(
        self, tokens: array[int], floor: int, report: RequestReport
    ) -> int | None:
        """Restore a full snapshot (RAM, else disk) of a prompt prefix longer than `floor`."""
        n = len(tokens)
        max_start = final_batch_rule(n)[1]
        full = self.cache.best_full(tokens, max_start, floor)
        if full is not None and not self._can_start_at(full.pos, n):
            full = None
        reach = full.pos if full is not None else floor
        for pos, digest, parent in self.store.candidates(reach, max_start) if self.store else ():
            if not self._can_start_at(pos, n) or prefix_digest(tokens, pos) != digest:
                continue
            restored = self._restore_from_disk(tokens, pos, digest, parent)
            if restored is None:
                continue  # unreadable entry, dropped; the state is untouched
            if restored:
                report.restore_kind, report.restored_from = "disk", pos
                self._count("disk")
                return pos
            return None  # llama.cpp rejected the state, which was cleared
        if full is not None:
            if self._restore_full(tokens, full.pos, full.data):
                full.touch()
                self.cache.hits += 1
                report.restore_kind, report.restored_from = "full", full.pos
                self._count("full")
                return full.pos
            self.cache.remove(full)
        return None

    def _restore_from_disk(
        self, tokens: array[int], pos: int, digest: bytes, parent: tuple[int, bytes] | None
    ) -> bool | None:
        """Restore a persisted entry: a full snapshot, or a partial one on top of its parent.

        None: an entry could not be read (the store dropped it) and nothing was touched;
        False: llama.cpp refused the state, the entry was dropped and the state cleared."""
        store, session = self.store, self.session
        assert store is not None and session is not None
        if parent is None:
            data = store.load(digest, pos)
            if data is None:
                return None
            if self._restore_full(tokens, pos, data):
                return True
            store.drop(digest, pos)
            return False
        base = store.load(parent[1], parent[0])
        partial = store.load(digest, pos, partial=True) if base is not None else None
        if base is None or partial is None:
            store.drop(digest, pos, partial=True)
            return None
        session.clear()
        if (
            session.restore(base, partial=False)
            and session.restore(partial, partial=True)
            and session.trim(pos)
        ):
            self._set_live(tokens[:pos])
            return True
        logger.warning("persisted checkpoint at %d rejected by llama.cpp: dropped", pos)
        store.drop(digest, pos, partial=True)
        session.clear()
        self._set_live(array("i"))
        return False

    def _restore_partial(self, partial: Checkpoint, report: RequestReport) -> int | None:
        session = self.session
        assert session is not None
        if session.restore(partial.data, partial=True) and session.trim(partial.pos):
            partial.touch()
            self.cache.hits += 1
            self._set_live(self.live[: partial.pos])
            report.restore_kind, report.restored_from = "partial", partial.pos
            self._count("partial")
            return partial.pos
        logger.warning("partial checkpoint at %d could not be restored: dropped", partial.pos)
        self.cache.remove(partial)
        session.clear()
        self._set_live(array("i"))
        return None

    def _restore_full(self, tokens: array[int], pos: int, data: StateBytes) -> bool:
        session = self.session
        assert session is not None
        session.clear()
        if not session.restore(data, partial=False):
            logger.warning("full snapshot at %d rejected by llama.cpp: dropped", pos)
            self._set_live(array("i"))
            return False
        self._set_live(tokens[:pos])
        return True

    def _count(self, kind: str) -> None:
        self.restores[kind] = self.restores.get(kind, 0) + 1

    def _prefill(
        self,
        tokens: array[int],
        start: int,
        plan: list[PlannedCheckpoint],
        persist_at: int | None,
        gen: LocalGeneration,
        report: RequestReport,
    ) -> None:
        session = self.session
        assert session is not None
        n = len(tokens)
        snapshot_at: dict[int, PlannedCheckpoint] = {}
        if self.model.needs_checkpoints:
            snapshot_at = {
                p.pos: p for p in plan if p.pos >= start and not self.cache.has_partial(p.pos)
            }
        extra = [persist_at] if persist_at is not None and persist_at > start else []
        stops = sorted({*snapshot_at, *extra, n})
        required = {n}
        if not final_batch_ok(n, n - self._last_batch_start(start, stops)):
            # Reshape the end like a plain prefill (see final_batch_rule): split where its last
            # micro-batch starts and end no batch inside that one.
            final_start = final_batch_rule(n)[0]
            for pos in [p for p in snapshot_at if final_start < p < n]:
                del snapshot_at[pos]
            stops = [p for p in stops if not final_start < p < n]
            if final_start > start:
                stops = sorted({*stops, final_start})
                required.add(final_start)
        # Two stops one token apart would need a one-token micro-batch (see _batch_end): drop
        # the optional one (a snapshot); _can_start_at keeps `start` from being one before a
        # required stop.
        kept: list[int] = []
        for stop in stops:
            previous = kept[-1] if kept else start
            if stop - previous == 1 and stop not in required:
                continue
            if stop - previous == 1 and kept and previous not in required:
                kept.pop()
            kept.append(stop)
        for pos in set(stops) - set(kept):
            snapshot_at.pop(pos, None)
        stops = kept
        pos = start
        while True:
            self._take_snapshots(tokens, pos, snapshot_at, persist_at, report)
            if pos >= n:
                break
            self._check(gen)
            end = self._batch_end(pos, stops)
            session.decode(tokens[pos:end], pos, logits_last=end == n)
            self.live.extend(tokens[pos:end])
            self.exact = end - pos > 1 or not self.model.needs_checkpoints
            report.prefilled_tokens += end - pos
            pos = end

    def _batch_end(self, pos: int, stops: list[int]) -> int:
        """End of the prefill micro-batch that starts at `pos`, given the positions it must stop at.

        Never one token unless that is all there is before the stop: llama.cpp runs a one-token
        batch through the autoregressive DeltaNet kernel, whose recurrent state differs in the
        last bits from the chunked kernel's, and every later token would inherit the difference
        (measured: any split into batches of two or more tokens gives bitwise the same state).
        """
        remaining = next(s for s in stops if s > pos) - pos
        if remaining > self.n_batch and remaining % self.n_batch == 1:
            return pos + self.n_batch - 1
        return pos + min(remaining, self.n_batch)

    def _last_batch_start(self, start: int, stops: list[int]) -> int:
        """Where the last micro-batch of a prefill from `start` with these stops begins."""
        pos = last = start
        while pos < stops[-1]:
            last = pos
            pos = self._batch_end(pos, stops)
        return last

    def _can_start_at(self, start: int, n: int) -> bool:
        """Can a prefill of n tokens resume at `start` and still match a plain prefill? Not
        when reshaping its end (final_batch_rule) would need a one-token batch just before."""
        if start >= n or not self.model.needs_checkpoints:
            return True
        final_start = final_batch_rule(n)[0]
        if final_batch_ok(n, n - self._last_batch_start(start, [n])):
            return True
        return final_start - start != 1

    def _take_snapshots(
        self,
        tokens: array[int],
        pos: int,
        snapshot_at: dict[int, PlannedCheckpoint],
        persist_at: int | None,
        report: RequestReport,
    ) -> None:
        session = self.session
        assert session is not None
        planned = snapshot_at.get(pos)
        if planned is not None and self.exact:
            data = session.snapshot(partial=True)
            if self.cache.add(Checkpoint(pos, "partial", data, planned.priority)):
                report.checkpoints_taken += 1
        if pos == persist_at and self.store is not None and self.exact:
            digest = prefix_digest(tokens, pos)
            if not self.store.contains(digest, pos):
                state = session.snapshot(partial=False)
                self.store.save_async(digest, pos, state)
                # Keep it in RAM too when small: switching back to an earlier repository
                # context (another file's ranking) then costs a memory copy.
                if self.model.needs_checkpoints and len(state) <= self.cache.budget_bytes // 4:
                    self.cache.add(Checkpoint(pos, "full", state, PRIORITY_STABLE, digest))

    def _generate(
        self, params: GenerationParams, gen: LocalGeneration, report: RequestReport
    ) -> None:
        session = self.session
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
        stops = _StopFilter(params.stop)
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
                    gen._post("delta", text)
                if stopped:
                    return
                if i + 1 < params.max_tokens:
                    session.decode([token], len(self.live), logits_last=True)
                    self.live.append(token)
                    self.exact = not self.model.needs_checkpoints
            tail = stops.push(decoder.decode(b"", final=True))[0] + stops.flush()
            if tail:
                gen._post("delta", tail)
        finally:
            report.ms["decode"] = (time.perf_counter() - t_decode) * 1000
            sampler.close()


class LocalEngine:
    """Backend running a GGUF model in this process through llama-cpp-python."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._model: LoadedModel | None = None
        self._store: StateStore | None = None
        self._memo: _TokenMemo | None = None
        self._interactive: _LaneRunner | None = None
        self._background: _LaneRunner | None = None
        self._by_key: dict[str, LocalGeneration] = {}
        self._keys_lock = threading.Lock()
        self._interactive_pending = 0
        self._interactive_idle = threading.Event()
        self._interactive_idle.set()
        self._pending_lock = threading.Lock()
        self._info: ModelInfo | None = None

    async def start(self) -> None:
        if self._model is not None:
            return
        loop = asyncio.get_running_loop()
        model = await loop.run_in_executor(None, self._load_model)
        try:
            self._setup(model)
            assert self._interactive is not None
            await asyncio.wrap_future(self._interactive.executor.submit(self._interactive.open))
        except BaseException:
            await self.close()
            raise

    def _load_model(self) -> LoadedModel:
        return LoadedModel(self.config.model_path, n_gpu_layers=self.config.n_gpu_layers)

    def _setup(self, model: LoadedModel) -> None:
        config = self.config
        if config.prefill_chunk < DELTANET_CHUNK:
            raise EngineError(f"prefill_chunk must be at least {DELTANET_CHUNK} tokens")
        self._model = model
        n_ctx = config.n_ctx or model.n_ctx_train
        if model.n_ctx_train > 0:
            n_ctx = min(n_ctx, model.n_ctx_train)
        threads = config.n_threads or max(1, len(os.sched_getaffinity(0)))
        self._memo = _TokenMemo(model, config.token_memo_entries)
        if config.state_dir is not None:
            # "exact": states are taken only after multi-token micro-batches (see _batch_end)
            signature = f"n_batch={config.prefill_chunk}|seq=1|kv=f16|exact"
            self._store = StateStore(
                Path(config.state_dir),
                model_path=Path(config.model_path),
                context_signature=signature,
                size_limit=config.state_cache_bytes,
            )
        budget = int(config.checkpoint_memory_mb * (1 << 20))
        background_budget = (
            int(config.background_checkpoint_memory_mb * (1 << 20))
            if config.background_checkpoint_memory_mb is not None
            else budget // 4
        )
        common = {
            "n_batch": config.prefill_chunk,
            "n_threads": threads,
            "checkpoint_interval": config.checkpoint_interval,
            "store": self._store,
            "persist_min_tokens": config.persist_min_tokens,
            "persist_partials": config.persist_partials,
            "memo": self._memo,
        }
        self._interactive = _LaneRunner(
            "interactive",
            model,
            n_ctx=n_ctx,
            checkpoint_budget=budget,
            checkpoint_at_end=False,
            **common,  # type: ignore[arg-type]
        )
        self._background = _LaneRunner(
            "background",
            model,
            n_ctx=config.background_n_ctx or min(n_ctx, 32768),
            checkpoint_budget=background_budget,
            checkpoint_at_end=True,  # chat turns grow by appending after the reply
            pause=self._wait_for_interactive,
            **common,  # type: ignore[arg-type]
        )
        self._info = model.info(n_ctx)

    def _wait_for_interactive(self, cancelled: threading.Event) -> None:
        while not self._interactive_idle.wait(0.02):
            if cancelled.is_set():
                return

    def _runner(self, lane: Lane) -> _LaneRunner:
        runner = self._interactive if lane == "interactive" else self._background
        if runner is None:
            raise EngineError("the engine is not started: call `await engine.start()` first")
        return runner

    def stream(
        self,
        prompt: Prompt,
        params: GenerationParams,
        *,
        key: str | None = None,
        lane: Lane = "interactive",
    ) -> LocalGeneration:
        if lane not in ("interactive", "background"):
            raise ValueError(f"unknown lane {lane!r}")
        runner = self._runner(lane)
        gen = LocalGeneration(asyncio.get_running_loop(), lane)
        if key is not None:
            with self._keys_lock:
                previous = self._by_key.get(key)
                self._by_key[key] = gen
            if previous is not None:
                previous.cancel()
        if lane == "interactive":
            with self._pending_lock:
                self._interactive_pending += 1
                self._interactive_idle.clear()
        runner.executor.submit(self._run_job, runner, prompt, params, gen, key)
        return gen

    def _run_job(
        self,
        runner: _LaneRunner,
        prompt: Prompt,
        params: GenerationParams,
        gen: LocalGeneration,
        key: str | None,
    ) -> None:
        try:
            runner.run(prompt, params, gen)
        finally:
            if runner.name == "interactive":
                with self._pending_lock:
                    self._interactive_pending -= 1
                    if self._interactive_pending == 0:
                        self._interactive_idle.set()
            if key is not None:
                with self._keys_lock:
                    if self._by_key.get(key) is gen:
                        del self._by_key[key]

    def count_tokens(self, text: str) -> int:
        if self._model is None:
            raise EngineError("the engine is not started: call `await engine.start()` first")
        return len(self._model.tokenize(text))

    def info(self) -> ModelInfo:
        if self._info is None:
            raise EngineError("the engine is not started: call `await engine.start()` first")
        return self._info

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for runner in (self._interactive, self._background):
            if runner is not None:
                out[runner.name] = {
                    **runner.cache.stats(),
                    "requests": runner.requests,
                    "cancelled": runner.cancelled,
                    "restores": dict(runner.restores),
                    "live_tokens": len(runner.live),
                }
        if self._memo is not None:
            out["token_memo"] = {"hits": self._memo.hits, "misses": self._memo.misses}
        if self._store is not None:
            out["disk"] = self._store.stats()
        return out

    def flush_persisted(self) -> None:
        """Wait until queued state writes reached the disk (benchmarks, tests)."""
        if self._store is not None:
            self._store.flush()

    async def close(self) -> None:
        with self._keys_lock:
            running = list(self._by_key.values())
        for gen in running:
            gen.cancel()
        for runner in (self._interactive, self._background):
            if runner is not None:
                await asyncio.wrap_future(runner.executor.submit(runner.close))
                runner.executor.shutdown(wait=True)
        self._interactive = self._background = None
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._model is not None:
            self._model.close()
            self._model = None
