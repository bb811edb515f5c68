"""Real editing on the completion layout (`engine.formats.fim_prompt`): every output of the
engine is token-identical to a fresh full prefill of the same tokens, whatever it restored,
kept, warmed or persisted on the way (issue 15's patterns, replayed at random)."""

from __future__ import annotations

import asyncio
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.formats import fim_prompt
from engine.generation import LocalGeneration
from engine.local import LocalEngine
from engine.segments import Prompt, SegmentKind
from tests.engine.helpers import CODE, GREEDY, engine_config, reference

CHUNK_CHARS = 90
SUFFIX_CHARS = 60
REPOS = [[("a.py", CODE[0] * 2), ("b.py", CODE[1])], [("c.py", CODE[2] * 2), ("d.py", CODE[3])]]


def _prompt(repo: int, path: str, text: str, cursor: int) -> Prompt:
    return fim_prompt(
        "proj",
        REPOS[repo],
        path,
        text[:cursor],
        text[cursor:],
        chunk_chars=CHUNK_CHARS,
        suffix_chars=SUFFIX_CHARS,
    )


@dataclass
class Editor:
    """Files, the spots of each (cursor offsets, the current one first) and the last answer."""

    files: dict[str, str]
    spots: dict[str, list[int]]
    repo: dict[str, int]
    current: str = "main.py"
    completion: str = ""
    typed: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.files[self.current]

    @property
    def cursor(self) -> int:
        return min(self.spots[self.current][0], len(self.text))

    def prompt(self) -> Prompt:
        return _prompt(self.repo[self.current], self.current, self.text, self.cursor)

    def insert(self, at: int, text: str) -> None:
        """Insert text; spots after it move with the text."""
        self.files[self.current] = self.text[:at] + text + self.text[at:]
        self.spots[self.current] = [
            s + len(text) if s >= at else s for s in self.spots[self.current]
        ]

    def delete(self, at: int, count: int) -> None:
        self.files[self.current] = self.text[:at] + self.text[at + count :]
        self.spots[self.current] = [
            s - min(count, s - at) if s > at else s for s in self.spots[self.current]
        ]

    def warm_prompt(self, kind: str) -> Prompt | None:
        """What the completer warms: the line start of another spot below, or the accepted
        suggestion up to the new cursor."""
        if kind == "spot":
            below = [s for s in self.spots[self.current][1:] if s > self.cursor]
            if not below:
                return None
            line = self.text.rfind("\n", 0, below[0]) + 1
            repo = self.repo[self.current]
            return _prompt(repo, self.current, self.text, line).before(SegmentKind.LINE)
        if not self.completion:
            return None
        text = self.text[: self.cursor] + self.completion + self.text[self.cursor :]
        repo = self.repo[self.current]
        accepted = _prompt(repo, self.current, text, self.cursor + len(self.completion))
        return accepted.before(SegmentKind.TAIL)


step = st.one_of(
    st.tuples(st.just("type"), st.text(alphabet="abc xy()\n:=_", min_size=1, max_size=4)),
    st.tuples(st.just("jump"), st.integers(1, 2)),  # to another spot of the file, and typing
    st.tuples(st.just("switch"), st.sampled_from(["main.py", "util.py"])),
    st.tuples(st.just("top_edit"), st.text(alphabet="import os\n", min_size=1, max_size=6)),
    st.tuples(st.just("undo_redo"), st.integers(1, 4)),
    st.tuples(st.just("accept"), st.just(0)),
    # a warm-up, then the next request after `delay` ms (0: it cuts the warm-up short)
    st.tuples(st.sampled_from(["warm_spot", "warm_accept"]), st.sampled_from([0, 0, 1, 20])),
    st.tuples(st.just("rerank"), st.integers(0, 1)),
    st.tuples(st.just("restart"), st.just(0)),
)


# 16 examples took 269 s on 2 cores under load ~6: 10 keep it near two minutes there, and the
# explicit timeout holds under a heavier load.
@pytest.mark.timeout(900)
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    trace=st.lists(step, min_size=3, max_size=9),
    seed=st.integers(0, 1000),
    # 0.12 MB of partial checkpoints forces eviction; a prompt cache of 0.2 MB holds one or
    # two full snapshots of these prompts, 8 MB all of them
    budgets=st.sampled_from([(0.12, 0.2), (4.0, 8.0), (4.0, 0.0)]),
)
def test_editing_patterns_match_a_fresh_full_prefill(
    model_path: Path, trace: list[tuple[str, Any]], seed: int, budgets: tuple[float, float]
) -> None:
    rng = random.Random(seed)
    main = "".join(CODE[(seed + i) % 4] for i in range(6))
    util = CODE[(seed + 1) % 4] * 3
    editor = Editor(
        files={"main.py": main, "util.py": util},
        spots={
            "main.py": [len(main) * 3 // 4, len(main) // 4, len(main) // 2],
            "util.py": [len(util) // 2],
        },
        repo={"main.py": 0, "util.py": 1},
    )

    async def scenario(state_dir: str) -> None:
        config = engine_config(
            model_path,
            checkpoint_memory_mb=budgets[0],
            prompt_cache_mb=budgets[1],
            state_dir=state_dir,
            persist_min_tokens=64,
        )
        engine = LocalEngine(config)
        await engine.start()
        warming: list[LocalGeneration] = []

        async def complete() -> None:
            prompt = editor.prompt()
            gen = engine.stream(prompt, GREEDY, key=editor.current)
            editor.completion = await gen.text()
            assert gen.token_ids == await reference(engine, prompt, GREEDY.max_tokens)
            stats = engine.stats()["interactive"]
            assert stats["peak_bytes"] <= stats["budget_bytes"]
            cache = stats["prompt_cache"]
            assert cache["peak_bytes"] <= cache["budget_bytes"]

        async def type_text(text: str) -> None:
            for ch in text:  # one request per keystroke
                at = editor.cursor
                editor.insert(at, ch)
                editor.spots[editor.current][0] = at + 1
                editor.typed.append(ch)
                await complete()

        try:
            await complete()
            for op, arg in trace:
                if op == "type":
                    await type_text(arg)
                elif op == "jump":  # alternate: another spot becomes the current one
                    spots = editor.spots[editor.current]
                    if arg < len(spots):
                        spots.insert(0, spots.pop(arg))
                    await complete()
                    await type_text(rng.choice(["x", "(a", " = 1"]))
                elif op == "switch":
                    editor.current = arg
                    await complete()
                    await type_text("z")
                elif op == "top_edit":  # an import near the top, then back to the cursor
                    first_line = editor.text.find("\n") + 1
                    editor.insert(first_line, arg)
                    spots = editor.spots[editor.current]
                    spots.insert(0, first_line + len(arg))
                    await complete()
                    spots.pop(0)
                elif op == "undo_redo":
                    at = editor.cursor
                    removed = editor.text[max(0, at - arg) : at]
                    editor.delete(at - len(removed), len(removed))
                    await complete()  # undo
                    editor.insert(editor.cursor, removed)
                    await complete()  # redo
                elif op == "accept":
                    at = editor.cursor
                    editor.insert(at, editor.completion)
                    editor.spots[editor.current][0] = at + len(editor.completion)
                elif op in ("warm_spot", "warm_accept"):
                    prompt = editor.warm_prompt(op.removeprefix("warm_"))
                    if prompt is not None:
                        warming.append(engine.warm(prompt, key=editor.current))
                        await asyncio.sleep(arg / 1000)
                elif op == "restart":  # the editor restarts: state comes back from disk
                    await engine.close()
                    engine = LocalEngine(config)
                    await engine.start()
                else:
                    editor.repo[editor.current] = arg
                await complete()
            for gen in warming:
                assert gen.report is not None and gen.report.warmup
                assert gen.token_ids == []
        finally:
            await engine.close()

    with tempfile.TemporaryDirectory() as state_dir:
        asyncio.run(scenario(state_dir))


async def test_going_back_to_a_spot_resumes_at_its_line_start(engine: LocalEngine) -> None:
    """Two spots far apart, typing at each in turn: after the first visit of each, a
    keystroke re-reads its line and the text after the cursor, not the text in between."""
    text = "".join(CODE) * 3
    spots = [len(text) // 3, 2 * len(text) // 3]
    spots = [text.rfind("\n", 0, s) + 1 for s in spots]
    reports = []
    for _round in range(3):
        for index in (0, 1):
            at = spots[index]
            text = text[:at] + "q" + text[at:]
            spots = [s + 1 if s >= at else s for s in spots]
            prompt = _prompt(0, "main.py", text, spots[index])
            gen = engine.stream(prompt, GREEDY)
            await gen.text()
            assert gen.token_ids == await reference(engine, prompt, GREEDY.max_tokens)
            # the lower spot lost its state to the upper one's: warm it as the completer does
            if index == 0:
                line = text.rfind("\n", 0, spots[1]) + 1
                await engine.warm(_prompt(0, "main.py", text, line).before(SegmentKind.LINE)).text()
            assert gen.report is not None
            reports.append(gen.report)
    tail = engine.count_tokens(prompt.segments[-1].text)
    for report in reports[2:]:
        assert report.restore_kind in ("partial", "append"), report
        assert report.prefilled_tokens <= tail + 2 * 64, report


def _long_file() -> str:
    return "".join(CODE) * 4


async def test_a_warm_up_serves_the_request_that_follows(engine: LocalEngine) -> None:
    text = _long_file()
    cursor = text.rfind("\n", 0, len(text) // 2) + 1
    first = _prompt(0, "main.py", text, cursor)
    await engine.stream(first, GREEDY).text()
    # the user accepts "x = 1": the completer warmed the prompt up to the new cursor
    accepted = text[:cursor] + "x = 1" + text[cursor:]
    after = _prompt(0, "main.py", accepted, cursor + 5)
    warm = engine.warm(after.before(SegmentKind.TAIL))
    assert await warm.text() == ""
    assert warm.report is not None and warm.report.warmup and warm.report.prefilled_tokens > 0
    gen = engine.stream(after, GREEDY)
    await gen.text()
    report = gen.report
    assert report is not None
    assert report.warmup_tokens == warm.report.prefilled_tokens  # reported apart
    tail = engine.count_tokens(after.segments[-1].text)
    assert report.restore_kind == "append" and report.prefilled_tokens <= tail + 64
    assert gen.token_ids == await reference(engine, after, GREEDY.max_tokens)
    stats = engine.stats()["interactive"]
    assert stats["requests"] == 2 and stats["warmups"] == 1
    # warming what the state already holds does nothing
    again = engine.warm(after.before(SegmentKind.LINE))
    await again.text()
    assert again.report is not None and again.report.prefilled_tokens == 0


async def test_a_request_cuts_a_warm_up_short_and_uses_what_it_prefilled(
    engine: LocalEngine,
) -> None:
    text = _long_file() * 2
    prompt = _prompt(1, "main.py", text, len(text) - 10)
    warm = engine.warm(prompt.before(SegmentKind.TAIL))
    while engine.stats()["interactive"]["live_tokens"] == 0:  # its prefill is under way
        await asyncio.sleep(0.001)
    gen = engine.stream(prompt, GREEDY)
    await gen.text()
    assert warm.report is not None and warm.report.cancelled
    assert 0 < warm.report.prefilled_tokens < warm.report.prompt_tokens
    assert gen.report is not None and gen.report.reused_tokens >= warm.report.prefilled_tokens
    assert gen.token_ids == await reference(engine, prompt, GREEDY.max_tokens)


async def test_switching_files_and_back_restores_the_file_left(engine: LocalEngine) -> None:
    text, other = _long_file(), CODE[2] * 5
    cursor = text.rfind("\n", 0, len(text) // 2) + 1
    await engine.stream(_prompt(0, "main.py", text, cursor), GREEDY).text()
    await engine.stream(_prompt(1, "util.py", other, len(other) // 2), GREEDY).text()
    text = text[:cursor] + "y" + text[cursor:]
    back = _prompt(0, "main.py", text, cursor + 1)
    gen = engine.stream(back, GREEDY)
    await gen.text()
    report = gen.report
    assert report is not None and report.restore_kind == "full"
    anchor = sum(engine.count_tokens(s.text) for s in back.segments[:-2])
    assert report.restored_from == anchor  # the start of the cursor's line
    assert gen.token_ids == await reference(engine, back, GREEDY.max_tokens)
    assert engine.stats()["interactive"]["prompt_cache"]["kept"] >= 1
