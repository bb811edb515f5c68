"""Micro-batch rules of a prefill and the planner of its stops: no model needed."""

from __future__ import annotations

import itertools

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.batching import (
    DELTANET_CHUNK,
    batch_end,
    can_resume_at,
    final_batch_ok,
    final_batch_rule,
    plan_prefill_stops,
)


def _batches(start: int, stops: list[int], n_batch: int) -> list[int]:
    """Sizes of the micro-batches a prefill from `start` with these stops runs."""
    sizes, pos = [], start
    while pos < stops[-1]:
        end = batch_end(pos, stops, n_batch)
        sizes.append(end - pos)
        pos = end
    return sizes


def test_final_batch_classes_are_one_token_whole_chunks_or_the_rest() -> None:
    assert DELTANET_CHUNK == 64
    # n = 128 ends a plain prefill with a whole chunk: any multiple of 64 matches
    assert final_batch_ok(128, 64) and final_batch_ok(128, 128)
    assert not final_batch_ok(128, 1) and not final_batch_ok(128, 63)
    # n = 129 ends with one token: only one token matches
    assert final_batch_ok(129, 1)
    assert not final_batch_ok(129, 2) and not final_batch_ok(129, 64)
    # n = 130 ends with a padded chunk: any length that is neither 1 nor a multiple of 64
    assert final_batch_ok(130, 2) and final_batch_ok(130, 3) and final_batch_ok(130, 66)
    assert not final_batch_ok(130, 1) and not final_batch_ok(130, 64)


def test_final_batch_rule() -> None:
    assert final_batch_rule(128) == (64, 64)
    assert final_batch_rule(129) == (128, 128)
    assert final_batch_rule(130) == (128, 128)
    assert final_batch_rule(191) == (128, 189)
    assert final_batch_rule(40) == (0, 38)


def test_a_batch_never_leaves_one_token_before_a_stop() -> None:
    assert batch_end(0, [200], 64) == 64
    assert batch_end(0, [65], 64) == 63  # then 2, not 64 then 1
    assert _batches(0, [65], 64) == [63, 2]
    assert _batches(0, [129], 64) == [63, 64, 2]
    assert batch_end(10, [20, 300], 64) == 20  # a stop ends the batch early
    assert batch_end(19, [20, 300], 64) == 20  # one token only when it is all there is


def test_a_resume_one_token_before_the_reshaped_end_is_refused() -> None:
    # n = 129: a plain prefill ends with a one-token batch at 128; resuming at 127 would need
    # a one-token batch [127, 128) to keep that shape
    assert not can_resume_at(127, 129, 64)
    assert can_resume_at(126, 129, 64) and can_resume_at(128, 129, 64)
    # n = 130: from 127 the last batch is 3 tokens, the class of a plain prefill's 2
    assert can_resume_at(127, 130, 64)
    assert can_resume_at(130, 130, 64)


def test_plain_prefill_shape_without_snapshots() -> None:
    plan = plan_prefill_stops(0, 129, [], 64)
    assert plan.stops == [128, 129] and not plan.dropped
    assert _batches(0, plan.stops, 64) == [64, 64, 1]
    plan = plan_prefill_stops(0, 300, [], 64)
    assert plan.stops == [300]
    assert final_batch_ok(300, _batches(0, plan.stops, 64)[-1])


def test_a_snapshot_one_token_after_another_stop_is_dropped() -> None:
    plan = plan_prefill_stops(0, 300, [100, 101], 64)
    assert plan.stops == [100, 300] and plan.dropped == {101}
    plan = plan_prefill_stops(10, 300, [11, 50], 64)
    assert plan.stops == [50, 300] and plan.dropped == {11}
    assert 1 not in _batches(10, plan.stops, 64)


def test_snapshots_that_would_change_the_last_batch_class_are_dropped() -> None:
    # a snapshot one token before the end would make the last batch one token long
    plan = plan_prefill_stops(0, 300, [299], 64)
    assert plan.stops == [256, 300] and plan.dropped == {299}
    assert _batches(0, plan.stops, 64)[-1] == 300 - 256
    # n = 256 ends with a whole chunk; a stop at 250 would leave a 6-token last batch
    plan = plan_prefill_stops(0, 256, [100, 250], 64)
    assert plan.stops == [100, 192, 256] and plan.dropped == {250}
    # inside the last batch of the same class, a snapshot stays
    plan = plan_prefill_stops(0, 200, [195], 64)
    assert plan.stops == [195, 200] and not plan.dropped


def test_a_snapshot_at_the_start_is_kept_and_extra_stops_are_never_dropped_snapshots() -> None:
    plan = plan_prefill_stops(64, 300, [64, 200], 64, extra=[150])
    assert plan.stops == [64, 150, 200, 300] and not plan.dropped


def test_a_reshaped_end_one_token_after_the_start_keeps_only_the_end() -> None:
    # n = 89: a plain prefill's last batch starts at 64. From 63, with these snapshots the last
    # batch would be one token; splitting at 64 would need the one-token batch [63, 64) first.
    plan = plan_prefill_stops(63, 89, [64, 68, 78, 84, 85, 88], 64)
    assert plan.stops == [89] and plan.dropped == {64, 68, 78, 84, 85, 88}
    assert _batches(63, plan.stops, 64) == [26]


def test_dropping_a_stop_next_to_the_end_keeps_the_end_class() -> None:
    # n = 129 ends with one token; dropping the snapshot at 128 (next to the end) would leave
    # a 4-token last batch [125, 129)
    plan = plan_prefill_stops(0, 129, [125, 128], 256)
    assert plan.stops == [125, 128, 129] and not plan.dropped
    assert _batches(0, plan.stops, 256) == [125, 3, 1]


@st.composite
def _prefills(draw: st.DrawFn) -> tuple[int, int, set[int], list[int], int]:
    n_batch = draw(st.sampled_from([64, 65, 100, 128, 256]))
    n = draw(st.integers(1, 700))
    max_start = final_batch_rule(n)[1]
    assume(max_start >= 0)
    start = draw(st.integers(0, max_start))
    assume(can_resume_at(start, n, n_batch))
    # snapshots anywhere, and crowded near the end and the start where the rules bite
    near_end = st.integers(max(start, n - 2 * DELTANET_CHUNK), n)
    near_start = st.integers(start, min(n, start + 4))
    snapshots = draw(st.sets(st.integers(start, n) | near_end | near_start, max_size=12))
    extra = draw(st.lists(st.integers(start + 1, n), max_size=1))
    return start, n, snapshots, extra, n_batch


@settings(max_examples=500, deadline=None)
@given(_prefills())
def test_every_plan_keeps_the_shape_of_a_plain_prefill(
    case: tuple[int, int, set[int], list[int], int],
) -> None:
    start, n, snapshots, extra, n_batch = case
    plan = plan_prefill_stops(start, n, snapshots, n_batch, extra=extra)
    stops = plan.stops
    assert stops == sorted(set(stops)) and stops[-1] == n and stops[0] >= start
    assert plan.dropped <= snapshots and snapshots - plan.dropped <= set(stops)
    assert set(stops) <= snapshots | set(extra) | {n, final_batch_rule(n)[0]}
    sizes = _batches(start, stops, n_batch)
    assert all(1 <= size <= n_batch for size in sizes)
    ends = set(itertools.accumulate(sizes, initial=start))
    assert set(stops) <= ends  # the prefill stops at every stop
    # the final-batch-class rule: the last batch matches a plain prefill's
    assert final_batch_ok(n, sizes[-1])
    # the one-token-batch rule: only a last batch, where a plain prefill's is one token too
    assert 1 not in sizes[:-1]
    assert sizes[-1] > 1 or n % DELTANET_CHUNK == 1
