"""Where to snapshot the recurrent state, and the bounded in-memory stores of snapshots.

A *partial* checkpoint at position p holds only the recurrent half of the state after tokens
[0, p) (LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY). It can be restored only while the live attention KV
still holds those same tokens [0, p): the cache keeps that invariant by dropping partial
checkpoints past the point where the live tokens change (`keep_prefix`). A *full* checkpoint
holds attention KV + recurrent state and is valid for any live state whose prompt starts with
the same tokens; it is matched by a hash of its token prefix. A lane keeps its partial
checkpoints in one `CheckpointCache` and its full ones (the prompt cache: prompts it left, the
repository context) in another, each under its own byte budget.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from engine.segments import SegmentKind

CheckpointKind = Literal["partial", "full"]

# Segments whose text changes while the user types: checkpoints every `interval` tokens there.
# Elsewhere (system prompt, repository context, the text after the cursor) only the segment
# boundaries are kept, since an edit inside them is rare or invalidates everything after it.
DENSE_KINDS = frozenset({SegmentKind.FILE_PREFIX, SegmentKind.LOCAL})
# In the cursor's line, also this many tokens before the cursor: typing changes the last
# pre-token (the word being typed), so the next keystroke resumes there, not at the line start.
LINE_BACKOFF = 4


def prefix_digest(tokens: Sequence[int], n: int) -> bytes:
    """Identity of the token prefix [0, n): what a full snapshot is matched on."""
    from array import array

    data = tokens[:n]
    raw = data.tobytes() if isinstance(data, array) else array("i", data).tobytes()
    return hashlib.blake2b(raw, digest_size=20).digest()


# Eviction priority (lower goes first). Boundaries after the stable segments are shared by
# nearly every request; the start of the cursor's line is where the next keystroke at a spot
# resumes, so the line starts of the spots visited lately come next (`MAX_SPOTS` of them, LRU;
# older ones fall back to the grid); checkpoints on the interval grid and at chunk ends survive
# edits after them; the cursor end moves with every keystroke and goes stale first.
PRIORITY_CURSOR = 0
PRIORITY_GRID = 1
PRIORITY_SPOT = 2
PRIORITY_STABLE = 3
STABLE_KINDS = frozenset({SegmentKind.SYSTEM, SegmentKind.REPO})
MAX_SPOTS = 8


@dataclass(frozen=True)
class PlannedCheckpoint:
    pos: int
    boundary: bool
    kind: SegmentKind  # kind of the segment that ends (boundary) or contains the position

    @property
    def priority(self) -> int:
        if not self.boundary:
            return PRIORITY_CURSOR if self.kind >= SegmentKind.LINE else PRIORITY_GRID
        if self.kind in STABLE_KINDS:
            return PRIORITY_STABLE
        if self.kind == SegmentKind.LOCAL:
            return PRIORITY_SPOT  # the start of the cursor's line
        return PRIORITY_CURSOR if self.kind >= SegmentKind.LINE else PRIORITY_GRID


def plan_checkpoints(
    segment_lengths: Sequence[tuple[SegmentKind, int]],
    *,
    interval: int,
    prefix_tokens: int = 0,
    at_end: bool = False,
) -> list[PlannedCheckpoint]:
    """Positions at which to snapshot the state while prefilling this prompt.

    Boundaries between segments always; inside DENSE_KINDS segments every `interval` tokens,
    aligned on the segment start so that an edit keeps every checkpoint before it; in a LINE
    segment, `LINE_BACKOFF` tokens before its end. Positions
    lie in [1, total - 1] (a restore must leave at least one token to decode for logits), plus
    `total` itself when `at_end` (for prompts that later grow by appending, e.g. chat).
    `prefix_tokens` counts tokens before the first segment (a BOS).
    """
    total = prefix_tokens + sum(length for _, length in segment_lengths)
    planned: dict[int, PlannedCheckpoint] = {}
    start = prefix_tokens
    for kind, length in segment_lengths:
        end = start + length
        if kind in DENSE_KINDS and interval > 0:
            for pos in range(start + interval, end, interval):
                planned[pos] = PlannedCheckpoint(pos, False, kind)
        if kind == SegmentKind.LINE and length > LINE_BACKOFF + 1:
            planned[end - LINE_BACKOFF] = PlannedCheckpoint(end - LINE_BACKOFF, False, kind)
        if length > 0:
            planned[end] = PlannedCheckpoint(end, True, kind)
        start = end
    limit = total if at_end else total - 1
    return sorted((p for p in planned.values() if 1 <= p.pos <= limit), key=lambda p: p.pos)


_ticks = itertools.count()


@dataclass(eq=False)  # identity semantics: never compare snapshot bytes
class Checkpoint:
    pos: int
    kind: CheckpointKind
    data: bytes | bytearray | memoryview
    priority: int
    digest: bytes | None = None  # prefix identity; required for full checkpoints
    last_used: int = field(default_factory=lambda: next(_ticks))
    spot: bool = False  # a spot's line start kept at PRIORITY_GRID for now (see MAX_SPOTS)

    @property
    def nbytes(self) -> int:
        return len(self.data)

    def touch(self) -> None:
        self.last_used = next(_ticks)


class CheckpointCache:
    """Snapshots of one llama context, within `budget_bytes`.

    Eviction is LRU within priority tiers (see PRIORITY_*): checkpoints around the cursor go
    first, the boundaries after the repository context last; beyond `max_spots` checkpoints of
    PRIORITY_SPOT, the least recently used one drops to PRIORITY_GRID. A snapshot larger than
    the whole budget is never stored.
    """

    def __init__(self, budget_bytes: int, *, max_spots: int = MAX_SPOTS) -> None:
        self.budget_bytes = budget_bytes
        self.max_spots = max_spots
        self._partial: dict[int, Checkpoint] = {}
        self._full: list[Checkpoint] = []
        self.bytes_used = 0
        self.hits = 0
        self.evictions = 0
        self.peak_bytes = 0

    def __len__(self) -> int:
        return len(self._partial) + len(self._full)

    def has_partial(self, pos: int) -> bool:
        return pos in self._partial

    def partial_at(self, pos: int) -> Checkpoint | None:
        return self._partial.get(pos)

    def partial_positions(self) -> list[int]:
        return sorted(self._partial)

    def make_room(self, nbytes: int) -> bool:
        """Evict until `nbytes` more fit the budget; False (nothing evicted) if they never can.

        Called before a snapshot is copied out, so that the snapshot and the checkpoints it
        replaces are never in memory together: the budget bounds the peak, not just what is
        stored after the copy.
        """
        if nbytes > self.budget_bytes:
            return False
        while self.bytes_used + nbytes > self.budget_bytes:
            victim = min(self._all(), key=lambda c: (c.priority, c.last_used))
            self._remove(victim)
            self.evictions += 1
        return True

    def add(self, checkpoint: Checkpoint) -> bool:
        """Store `checkpoint`, evicting others as needed; False if it cannot fit at all."""
        if checkpoint.nbytes > self.budget_bytes:
            return False
        if checkpoint.kind == "partial":
            self._remove(self._partial.get(checkpoint.pos))
        else:
            assert checkpoint.digest is not None, "full checkpoints need a prefix digest"
            for old in [c for c in self._full if c.pos == checkpoint.pos]:
                if old.digest == checkpoint.digest:
                    self._remove(old)
        self.make_room(checkpoint.nbytes)
        if checkpoint.kind == "partial":
            self._partial[checkpoint.pos] = checkpoint
        else:
            self._full.append(checkpoint)
        self.bytes_used += checkpoint.nbytes
        self.peak_bytes = max(self.peak_bytes, self.bytes_used)
        self._cap_spots()
        return True

    def used(self, checkpoint: Checkpoint) -> None:
        """A restore used `checkpoint`: most recently used, and a spot again if it was one."""
        checkpoint.touch()
        self.hits += 1
        if checkpoint.spot:
            checkpoint.priority, checkpoint.spot = PRIORITY_SPOT, False
            self._cap_spots()

    def _cap_spots(self) -> None:
        spots = [c for c in self._all() if c.priority == PRIORITY_SPOT]
        for old in sorted(spots, key=lambda c: c.last_used)[: len(spots) - self.max_spots]:
            old.priority, old.spot = PRIORITY_GRID, True

    def best_partial(self, max_pos: int) -> Checkpoint | None:
        """The partial checkpoint nearest below or at `max_pos` (all are valid by invariant)."""
        candidates = [pos for pos in self._partial if pos <= max_pos]
        return self._partial[max(candidates)] if candidates else None

    def has_full(self, digest: bytes, pos: int) -> bool:
        return any(c.pos == pos and c.digest == digest for c in self._full)

    def best_full(self, tokens: Sequence[int], max_pos: int, min_pos: int) -> Checkpoint | None:
        """The furthest full checkpoint in (min_pos, max_pos] whose prefix equals tokens'."""
        for checkpoint in sorted(self._full, key=lambda c: -c.pos):
            if min_pos < checkpoint.pos <= max_pos and checkpoint.digest == prefix_digest(
                tokens, checkpoint.pos
            ):
                return checkpoint
        return None

    def keep_prefix(self, valid_upto: int) -> None:
        """The live tokens changed after `valid_upto`: partial checkpoints past it are stale."""
        for pos in [p for p in self._partial if p > valid_upto]:
            self._remove(self._partial[pos])

    def remove(self, checkpoint: Checkpoint) -> None:
        self._remove(checkpoint)

    def clear(self) -> None:
        self._partial.clear()
        self._full.clear()
        self.bytes_used = 0

    def _all(self) -> list[Checkpoint]:
        return [*self._partial.values(), *self._full]

    def _remove(self, checkpoint: Checkpoint | None) -> None:
        if checkpoint is None:
            return
        if checkpoint.kind == "partial":
            if self._partial.get(checkpoint.pos) is not checkpoint:
                return
            del self._partial[checkpoint.pos]
        else:
            if checkpoint not in self._full:
                return
            self._full.remove(checkpoint)
        self.bytes_used -= checkpoint.nbytes

    def stats(self) -> dict[str, int]:
        return {
            "checkpoints": len(self),
            "partial": len(self._partial),
            "full": len(self._full),
            "bytes": self.bytes_used,
            "peak_bytes": self.peak_bytes,
            "budget_bytes": self.budget_bytes,
            "hits": self.hits,
            "evictions": self.evictions,
        }
