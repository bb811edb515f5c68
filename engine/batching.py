"""How a prefill is cut into micro-batches so that a resumed prefill matches a plain one.

Two rules of llama.cpp's Gated DeltaNet kernels on qwen3next (docs/benchmarks.md, Correctness):

- A one-token micro-batch runs through the autoregressive kernel, whose recurrent state differs
  in the last bits from the chunked kernel's, and every later token inherits the difference;
  any split into batches of two or more tokens gives bitwise the same state. So a prefill never
  runs a one-token batch except where a plain prefill runs one too (its last token).
- The logits of a prefill are bitwise the same for every split as long as the last micro-batch
  falls in the same class (`_final_batch_class`). So a resumed prefill ends with a batch of the
  class a plain prefill of the same tokens ends with (`final_batch_rule`).

Everything here is pure: positions in, positions out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Chunk size of llama.cpp's chunked Gated DeltaNet kernel (src/models/delta-net-base.cpp).
DELTANET_CHUNK = 64


def _final_batch_class(size: int) -> int:
    """The class of a last micro-batch of `size` tokens: one token (autoregressive kernel), a
    multiple of the DeltaNet chunk (no padding), or anything else (padded last chunk). Across
    classes the last logits differ, enough to flip a greedy near-tie; batch size and thread
    count do not matter otherwise."""
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


def batch_end(pos: int, stops: Sequence[int], n_batch: int) -> int:
    """End of the prefill micro-batch that starts at `pos`, given the sorted positions it must
    stop at: at most `n_batch` tokens, and never one token unless that is all there is before
    the next stop (a split that would leave one token for the end leaves two)."""
    remaining = next(s for s in stops if s > pos) - pos
    if remaining > n_batch and remaining % n_batch == 1:
        return pos + n_batch - 1
    return pos + min(remaining, n_batch)


def last_batch_start(start: int, stops: Sequence[int], n_batch: int) -> int:
    """Where the last micro-batch of a prefill from `start` with these stops begins."""
    pos = last = start
    while pos < stops[-1]:
        last = pos
        pos = batch_end(pos, stops, n_batch)
    return last


def can_resume_at(start: int, n: int, n_batch: int) -> bool:
    """Can a prefill of n tokens of a recurrent model resume at `start` and still match a plain
    prefill? Not when reshaping its end (final_batch_rule) would need a one-token batch just
    before."""
    if final_batch_ok(n, n - last_batch_start(start, [n], n_batch)):
        return True
    return final_batch_rule(n)[0] - start != 1


@dataclass(frozen=True)
class PrefillStops:
    """Where the micro-batches of one prefill must end, and the snapshots it cannot take."""

    stops: list[int]  # sorted; the last one is the prompt's end
    dropped: frozenset[int]  # snapshot positions that are no stop any more


def plan_prefill_stops(
    start: int,
    n: int,
    snapshots: Iterable[int],
    n_batch: int,
    *,
    extra: Iterable[int] = (),
) -> PrefillStops:
    """Stops of a prefill of tokens [start, n) that wants to stop at `snapshots` (positions at or
    after `start` where a checkpoint is planned) and at `extra` (optional stops, e.g. where the
    repository context is persisted).

    `start` must satisfy `can_resume_at` and lie at or before `final_batch_rule(n)[1]`. Then no
    micro-batch is one token long unless a plain prefill's last one is too, and the last one
    falls in the class of a plain prefill's. The end is always a stop. When the last batch would
    fall in another class, the prefill also stops where a plain prefill's last batch starts and
    ends no batch inside that one. Two stops one token apart would need a one-token batch: the
    optional one goes.
    """
    wanted = set(snapshots)
    stops = sorted({*wanted, *extra, n})
    required = {n}
    stops = _drop_adjacent(start, _reshape_end(start, n, stops, n_batch, required), required)
    # Dropping a stop next to the end can change the last batch's class: reshape once more
    # (the last batch then starts at a required stop and nothing is dropped after it).
    stops = _drop_adjacent(start, _reshape_end(start, n, stops, n_batch, required), required)
    return PrefillStops(stops, frozenset(wanted - set(stops)))


def _reshape_end(
    start: int, n: int, stops: list[int], n_batch: int, required: set[int]
) -> list[int]:
    """Stops whose last batch falls in a plain prefill's class; adds the stops that must stay
    to `required`."""
    if final_batch_ok(n, n - last_batch_start(start, stops, n_batch)):
        return stops
    final_start = final_batch_rule(n)[0]
    if final_start - start == 1:
        # Splitting there would need a one-token batch first; without the optional stops the
        # prefill ends in the right class (can_resume_at checked it).
        return [p for p in stops if p <= start or p == n]
    stops = [p for p in stops if not final_start < p < n]
    if final_start > start:
        required.add(final_start)
        return sorted({*stops, final_start})
    return stops


def _drop_adjacent(start: int, stops: list[int], required: set[int]) -> list[int]:
    """Drop optional stops one token after the previous stop (or `start`), or one token before
    a required one."""
    kept: list[int] = []
    for stop in stops:
        previous = kept[-1] if kept else start
        if stop - previous == 1 and stop not in required:
            continue
        if stop - previous == 1 and kept and previous not in required:
            kept.pop()
        kept.append(stop)
    return kept
