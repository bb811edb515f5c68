"""The state one llama context holds, and how it is moved to a new prompt.

`LiveState.prepare` brings the context to the longest usable prefix of a prompt: a pure append
keeps everything; otherwise the nearest usable snapshot at or before the divergence is restored
(a full snapshot in RAM or on disk, a partial recurrent snapshot + attention trim, or on a plain
transformer just the trim); with none, the state is cleared. A start position is usable only if
the rest of the prefill can still match a plain prefill (`engine.batching`).

Before a prompt that leaves the last request's file part (another file, another repository
context) overwrites the state, the state at that request's anchor (the start of its cursor's
line) goes to the prompt cache as a full snapshot: going back costs a copy, not a re-read.
"""

from __future__ import annotations

import logging
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from engine.batching import DELTANET_CHUNK, can_resume_at, final_batch_rule
from engine.checkpoints import PRIORITY_GRID, Checkpoint, CheckpointCache, prefix_digest
from engine.host import LlamaSession, LoadedModel, StateBytes
from engine.persist import StateStore
from engine.report import RequestReport
from engine.tokens import common_prefix_len

logger = logging.getLogger(__name__)

# A prompt left is kept only if going back would re-read at least this many tokens; a full
# snapshot is restored instead of a nearer checkpoint only if it saves at least this many.
KEEP_MIN_TOKENS = DELTANET_CHUNK
FULL_RESTORE_MIN_GAIN = DELTANET_CHUNK


@dataclass(frozen=True)
class Anchor:
    """Where the last request would resume at its spot (`pos`, the start of its cursor's
    line), where its file part starts, and its tokens."""

    pos: int
    file_start: int
    tokens: array[int]


class LiveState:
    """One llama context's session, the tokens it holds, its checkpoints and persisted store.

    Runs on the context's worker thread only.
    """

    def __init__(
        self,
        model: LoadedModel,
        cache: CheckpointCache,
        store: StateStore | None,
        *,
        n_batch: int,
        prompts: CheckpointCache | None = None,
    ) -> None:
        self.model = model
        self.cache = cache
        # Full snapshots: the prompt cache (prompts left, the repository context).
        self.prompts = prompts if prompts is not None else CheckpointCache(0)
        self.store = store
        self.n_batch = n_batch
        self.session: LlamaSession | None = None  # opened on the worker thread
        self.live: array[int] = array("i")
        # Whether the recurrent state at len(live) is bitwise what a plain prefill of `live`
        # gives: false after a one-token micro-batch, e.g. generated tokens (engine.batching).
        self.exact = True
        self.restores: dict[str, int] = {}
        self.anchor: Anchor | None = None
        self.kept = 0  # prompts kept in the prompt cache when left

    def _session(self) -> LlamaSession:
        session = self.session
        assert session is not None, "the lane's session is opened before its first request"
        return session

    def decode(self, batch: Sequence[int], *, logits_last: bool) -> None:
        """Decode one micro-batch after the live tokens."""
        self._session().decode(batch, len(self.live), logits_last=logits_last)
        self.live.extend(batch)
        self.exact = len(batch) > 1 or not self.model.needs_checkpoints

    def set_live(self, new_live: array[int]) -> None:
        """Replace the live tokens after a clear or a restore (both leave an exact state);
        partial checkpoints past the common prefix become stale."""
        self.cache.keep_prefix(common_prefix_len(self.live, new_live))
        self.live = new_live
        self.exact = True

    def clear(self) -> None:
        """Start over from an empty context (after a failure, or when nothing is reusable)."""
        if self.session is not None:
            self.session.clear()
        self.set_live(array("i"))

    def _rejected(self, what: str, pos: int) -> None:
        """llama.cpp refused a snapshot (the caller drops it): the state is unknown, clear it."""
        logger.warning("%s at %d rejected by llama.cpp: dropped", what, pos)
        self.clear()

    def can_start_at(self, start: int, n: int) -> bool:
        return not self.model.needs_checkpoints or can_resume_at(start, n, self.n_batch)

    def keep_left_prompt(self, tokens: array[int], report: RequestReport) -> None:
        """`tokens` are about to replace the live state: if they leave the last request's file
        part, keep a full snapshot of its anchor in the prompt cache."""
        anchor = self.anchor
        if anchor is None or self.prompts.budget_bytes <= 0:
            return
        lcp = common_prefix_len(self.live, tokens)
        if lcp >= anchor.file_start:
            return  # still the same file: its spots resume from partial checkpoints
        self.anchor = None
        pos = anchor.pos
        if pos - lcp < KEEP_MIN_TOKENS or common_prefix_len(self.live, anchor.tokens) < pos:
            return
        digest = prefix_digest(anchor.tokens, pos)
        if self.prompts.has_full(digest, pos):
            return
        started = time.perf_counter()
        session = self._session()
        if len(self.live) != pos or not self.exact:
            partial = self.cache.partial_at(pos)
            if self.model.needs_checkpoints and partial is None:
                return
            if partial is not None and not session.restore(partial.data, partial=True):
                self.cache.remove(partial)
                self._rejected("partial checkpoint", pos)
                return
            if not session.trim(pos):
                self._rejected("attention trim", pos)
                return
            self.set_live(self.live[:pos])
        if self.prompts.add(
            Checkpoint(pos, "full", session.snapshot(partial=False), PRIORITY_GRID, digest)
        ):
            self.kept += 1
        report.ms["save"] = (time.perf_counter() - started) * 1000

    def holds(self, tokens: array[int]) -> bool:
        """Can a prompt that starts with `tokens` resume at their end without a prefill?"""
        n = len(tokens)
        if common_prefix_len(self.live, tokens) >= n and (
            self.cache.has_partial(n) or (len(self.live) == n and self.exact)
        ):
            return True
        return self.prompts.has_full(prefix_digest(tokens, n), n)

    def prepare(self, tokens: array[int], report: RequestReport) -> int:
        """Bring the context to a state that holds tokens[:start]; return start."""
        self.keep_left_prompt(tokens, report)
        session = self._session()
        n = len(tokens)
        while True:
            lcp = common_prefix_len(self.live, tokens)
            max_start = final_batch_rule(n)[1]
            appendable = (
                lcp == len(self.live)
                and lcp <= max_start
                and self.exact
                and self.can_start_at(lcp, n)
            )
            target = min(lcp, max_start)
            partial = None
            if appendable:
                floor = lcp
            elif self.model.needs_checkpoints:
                partial = self.cache.best_partial(target)
                while partial is not None and not self.can_start_at(partial.pos, n):
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
        self.clear()
        report.restore_kind = "none"
        return 0

    def _restore_full_beyond(
        self, tokens: array[int], floor: int, report: RequestReport
    ) -> int | None:
        """Restore a full snapshot (RAM, else disk) of a prompt prefix longer than `floor`."""
        n = len(tokens)
        max_start = final_batch_rule(n)[1]
        # A copy of the whole state is worth it only if it saves a re-read of some length.
        min_pos = floor + FULL_RESTORE_MIN_GAIN - 1 if floor > 0 else 0
        full = self.prompts.best_full(tokens, max_start, min_pos)
        if full is not None and not self.can_start_at(full.pos, n):
            full = None
        reach = full.pos if full is not None else floor
        for pos, digest, parent in self.store.candidates(reach, max_start) if self.store else ():
            if not self.can_start_at(pos, n) or prefix_digest(tokens, pos) != digest:
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
                self.prompts.used(full)
                report.restore_kind, report.restored_from = "full", full.pos
                self._count("full")
                return full.pos
            self.prompts.remove(full)
        return None

    def _restore_from_disk(
        self, tokens: array[int], pos: int, digest: bytes, parent: tuple[int, bytes] | None
    ) -> bool | None:
        """Restore a persisted entry: a full snapshot, or a partial one on top of its parent.

        None: an entry could not be read (the store dropped it) and nothing was touched;
        False: llama.cpp refused the state, the entry was dropped and the state cleared."""
        store, session = self.store, self._session()
        assert store is not None
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
            self.set_live(tokens[:pos])
            return True
        store.drop(digest, pos, partial=True)
        self._rejected("persisted checkpoint", pos)
        return False

    def _restore_partial(self, partial: Checkpoint, report: RequestReport) -> int | None:
        session = self._session()
        if session.restore(partial.data, partial=True) and session.trim(partial.pos):
            self.cache.used(partial)
            self.set_live(self.live[: partial.pos])
            report.restore_kind, report.restored_from = "partial", partial.pos
            self._count("partial")
            return partial.pos
        self.cache.remove(partial)
        self._rejected("partial checkpoint", partial.pos)
        return None

    def _restore_full(self, tokens: array[int], pos: int, data: StateBytes) -> bool:
        session = self._session()
        session.clear()
        if not session.restore(data, partial=False):
            self._rejected("full snapshot", pos)
            return False
        self.set_live(tokens[:pos])
        return True

    def _count(self, kind: str) -> None:
        self.restores[kind] = self.restores.get(kind, 0) + 1

    def persist_up_to(self, pos: int, partials: int, partial_bytes: int | None = None) -> None:
        """Persist the state up to `pos` and up to `partials` checkpoints before it, of at most
        `partial_bytes` together (None: no byte limit).

        Editors reopen files where they were left: after a restart the first completion then
        restores repository context, file prefix and local window from disk at once, and a
        cursor elsewhere in the file resumes from the nearest persisted checkpoint, not from
        the end of the repository context.
        """
        session = self.session
        if self.store is None or session is None or pos > len(self.live):
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
        self.set_live(self.live[:pos])
        self.store.save_async(digest, pos, session.snapshot(partial=False)).result()
        for checkpoint in self._checkpoints_to_persist(pos, partials, partial_bytes):
            self.store.save_async(
                prefix_digest(self.live, checkpoint.pos),
                checkpoint.pos,
                checkpoint.data,
                parent=(pos, digest),
            )
        self.store.flush()

    def _checkpoints_to_persist(
        self, pos: int, count: int, max_bytes: int | None
    ) -> list[Checkpoint]:
        """Up to `count` partial checkpoints before `pos` (and `max_bytes` of them), spread
        evenly."""
        assert self.store is not None
        positions = [
            p
            for p in self.cache.partial_positions()
            if p < pos and not self.store.contains(prefix_digest(self.live, p), p)
        ]
        if positions and max_bytes is not None:
            size = self.cache.partial_at(positions[-1])
            count = min(count, max_bytes // max(1, size.nbytes)) if size is not None else 0
        if not positions or count <= 0:
            return []
        step = max(1, len(positions) // count)
        chosen = positions[::-1][::step][:count]  # nearest the cursor first
        return [c for p in chosen if (c := self.cache.partial_at(p)) is not None]
