"""Checkpoint placement, the bounded checkpoint cache, stop sequences: no model needed."""

from __future__ import annotations

from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.checkpoints import (
    LINE_BACKOFF,
    PRIORITY_CURSOR,
    PRIORITY_GRID,
    PRIORITY_SPOT,
    PRIORITY_STABLE,
    Checkpoint,
    CheckpointCache,
    plan_checkpoints,
    prefix_digest,
)
from engine.segments import Prompt, PromptSegment, SegmentKind
from engine.stop_filter import StopFilter
from engine.tokens import common_prefix_len

K = SegmentKind


def test_prompt_text_joins_segments() -> None:
    prompt = Prompt.of(("a", K.REPO), ("b", K.LOCAL))
    assert prompt.text == "ab"
    assert prompt.segments[1] == PromptSegment("b", K.LOCAL)


def test_plan_dense_only_in_the_current_file_and_boundaries_everywhere() -> None:
    plan = plan_checkpoints(
        [
            (K.SYSTEM, 10),
            (K.REPO, 1000),
            (K.FILE_PREFIX, 300),
            (K.LOCAL, 100),
            (K.LINE, 20),
            (K.TAIL, 50),
        ],
        interval=128,
    )
    positions = [p.pos for p in plan]
    # boundaries: 10, 1010, 1310, 1410, 1430; grid in FILE_PREFIX from 1010: 1138, 1266; in
    # the line, LINE_BACKOFF tokens before the cursor
    assert positions == [10, 1010, 1138, 1266, 1310, 1410, 1430 - LINE_BACKOFF, 1430]
    priorities = {p.pos: p.priority for p in plan}
    assert priorities[1010] == PRIORITY_STABLE
    assert priorities[1138] == priorities[1310] == PRIORITY_GRID  # the grid, a chunk end
    assert priorities[1410] == PRIORITY_SPOT  # the start of the cursor's line
    assert priorities[1430] == priorities[1430 - LINE_BACKOFF] == PRIORITY_CURSOR


def test_plan_keeps_one_token_to_decode_unless_at_end() -> None:
    lengths = [(K.REPO, 64), (K.LOCAL, 64)]
    assert [p.pos for p in plan_checkpoints(lengths, interval=32)] == [64, 96]
    assert [p.pos for p in plan_checkpoints(lengths, interval=32, at_end=True)] == [64, 96, 128]
    assert [p.pos for p in plan_checkpoints(lengths, interval=32, prefix_tokens=1)] == [65, 97]


def test_plan_grid_is_aligned_on_segment_start_so_edits_keep_earlier_checkpoints() -> None:
    before = {p.pos for p in plan_checkpoints([(K.REPO, 50), (K.LOCAL, 400)], interval=64)}
    after = {p.pos for p in plan_checkpoints([(K.REPO, 50), (K.LOCAL, 420)], interval=64)}
    assert {p for p in before if p < 300} <= after


def _cp(pos: int, size: int, priority: int = PRIORITY_GRID) -> Checkpoint:
    return Checkpoint(pos, "partial", bytes(size), priority)


@settings(max_examples=200, deadline=None)
@given(
    budget=st.integers(1, 5000),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["add", "keep", "full"]),
            st.integers(1, 2000),
            st.integers(1, 1500),
            st.sampled_from([PRIORITY_CURSOR, PRIORITY_GRID, PRIORITY_SPOT, PRIORITY_STABLE]),
        ),
        max_size=60,
    ),
)
def test_cache_never_exceeds_its_budget(budget: int, ops: list[tuple[str, int, int, int]]) -> None:
    cache = CheckpointCache(budget)
    for op, pos, size, priority in ops:
        if op == "add":
            stored = cache.add(_cp(pos, size, priority))
            assert stored == (size <= budget)
        elif op == "full":
            cache.add(Checkpoint(pos, "full", bytes(size), priority, digest=b"x"))
        else:
            cache.keep_prefix(pos)
            assert all(p <= pos for p in cache.partial_positions())
        assert cache.bytes_used <= budget
        assert cache.peak_bytes <= budget
        assert cache.bytes_used == sum(c.nbytes for c in cache._all())


def test_room_is_made_before_a_snapshot_is_copied_out() -> None:
    """What a lane does before copying a snapshot: stored + the new one stay within budget."""
    cache = CheckpointCache(300)
    for pos in (10, 20, 30):
        cache.add(_cp(pos, 100))
    assert cache.make_room(150)
    assert cache.bytes_used + 150 <= 300
    assert cache.partial_positions() == [30]  # least recently used first
    assert not cache.make_room(301)
    assert cache.partial_positions() == [30]  # a snapshot that can never fit evicts nothing


def test_both_lanes_together_stay_within_the_checkpoint_setting() -> None:
    from engine.config import EngineConfig, lane_configs

    interactive, background = lane_configs(EngineConfig("m.gguf", checkpoint_memory_mb=1024), 4096)
    assert interactive.checkpoint_budget_bytes == 768 << 20
    assert background.checkpoint_budget_bytes == 256 << 20
    explicit = EngineConfig("m.gguf", checkpoint_memory_mb=1024, background_checkpoint_memory_mb=64)
    interactive, background = lane_configs(explicit, 4096)
    assert (interactive.checkpoint_budget_bytes, background.checkpoint_budget_bytes) == (
        1024 << 20,
        64 << 20,
    )


def test_cache_evicts_cursor_checkpoints_before_stable_boundaries() -> None:
    cache = CheckpointCache(300)
    cache.add(_cp(10, 100, PRIORITY_STABLE))
    cache.add(_cp(20, 100, PRIORITY_GRID))
    cache.add(_cp(30, 100, PRIORITY_CURSOR))
    cache.add(_cp(40, 100, PRIORITY_CURSOR))
    assert cache.partial_positions() == [10, 20, 40]
    cache.add(_cp(50, 100, PRIORITY_GRID))
    assert cache.partial_positions() == [10, 20, 50]


def test_only_the_latest_spots_outrank_the_grid_and_a_spot_used_again_is_one_again() -> None:
    cache = CheckpointCache(10_000, max_spots=2)
    for pos in (100, 200, 300):
        cache.add(_cp(pos, 10, PRIORITY_SPOT))
    priority = {pos: cache.partial_at(pos).priority for pos in (100, 200, 300)}  # type: ignore[union-attr]
    assert priority == {100: PRIORITY_GRID, 200: PRIORITY_SPOT, 300: PRIORITY_SPOT}
    oldest = cache.partial_at(100)
    assert oldest is not None
    cache.used(oldest)  # the user went back there
    priority = {pos: cache.partial_at(pos).priority for pos in (100, 200, 300)}  # type: ignore[union-attr]
    assert priority == {100: PRIORITY_SPOT, 200: PRIORITY_GRID, 300: PRIORITY_SPOT}
    assert cache.hits == 1
    # eviction takes the demoted spot before the spots
    small = CheckpointCache(30, max_spots=2)
    for pos in (100, 200, 300):
        small.add(_cp(pos, 10, PRIORITY_SPOT))
    small.add(_cp(400, 10, PRIORITY_SPOT))
    assert small.partial_positions() == [200, 300, 400]  # 100, demoted, went first


def test_cache_best_partial_and_stale_prefix() -> None:
    cache = CheckpointCache(10_000)
    for pos in (100, 200, 300):
        cache.add(_cp(pos, 10))
    best = cache.best_partial(250)
    assert best is not None and best.pos == 200
    assert cache.best_partial(99) is None
    cache.keep_prefix(200)
    assert cache.partial_positions() == [100, 200]


def test_full_checkpoints_match_on_token_prefix() -> None:
    tokens = array("i", range(1000))
    cache = CheckpointCache(10_000)
    cache.add(Checkpoint(500, "full", bytes(10), PRIORITY_STABLE, prefix_digest(tokens, 500)))
    found = cache.best_full(tokens, 999, 0)
    assert found is not None and found.pos == 500
    other = array("i", tokens)
    other[3] = 7
    assert cache.best_full(other, 999, 0) is None
    assert cache.best_full(tokens, 499, 0) is None
    assert cache.best_full(tokens, 999, 500) is None


@given(st.lists(st.integers(0, 3), max_size=30), st.lists(st.integers(0, 3), max_size=30))
def test_common_prefix_len(a: list[int], b: list[int]) -> None:
    expected = 0
    while expected < min(len(a), len(b)) and a[expected] == b[expected]:
        expected += 1
    assert common_prefix_len(array("i", a), array("i", b)) == expected


@given(
    pieces=st.lists(st.text(alphabet="ab<|>x", max_size=4), max_size=12),
    stops=st.lists(st.text(alphabet="ab<|>", min_size=1, max_size=3), max_size=3),
)
def test_stop_filter_emits_exactly_the_text_before_the_first_stop(
    pieces: list[str], stops: list[str]
) -> None:
    full = "".join(pieces)
    # Generation stops as soon as some stop string is complete; the text before it is kept.
    cut = None
    for end in range(len(full) + 1):
        found = [i for i in (full[:end].find(s) for s in stops) if i >= 0]
        if found:
            cut = min(found)
            break
    stop_filter = StopFilter(stops)
    out = []
    stopped = False
    for piece in pieces:
        text, stopped = stop_filter.push(piece)
        out.append(text)
        if stopped:
            break
    if not stopped:
        out.append(stop_filter.flush())
    emitted = "".join(out)
    if cut is None:
        assert emitted == full
    else:
        assert stopped
        assert emitted == full[:cut]


def test_the_lanes_threads_stay_within_the_cores() -> None:
    """More OpenMP threads than cores make every llama.cpp parallel region wait for a thread
    to wake up: the background lane gets the cores the interactive lane leaves, at least one."""
    import os

    from engine.config import EngineConfig, lane_configs

    cores = len(os.sched_getaffinity(0))
    interactive, background = lane_configs(EngineConfig(model_path="m.gguf"), 4096)
    assert interactive.n_threads == cores and background.n_threads == 1
    interactive, background = lane_configs(
        EngineConfig(model_path="m.gguf", n_threads=1, background_n_threads=3), 4096
    )
    assert (interactive.n_threads, background.n_threads) == (1, 3)
