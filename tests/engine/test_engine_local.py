"""LocalEngine on the tiny random-weight qwen3next model; every output is compared with a fresh
full prefill of the same tokens (tests/engine/helpers.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.batching import DELTANET_CHUNK, final_batch_rule
from engine.checkpoints import prefix_digest
from engine.config import EngineConfig
from engine.errors import ContextOverflowError, ModelLoadError
from engine.generation import LocalGeneration
from engine.lane import LaneRunner
from engine.local import LocalEngine
from engine.params import GenerationParams
from engine.persist import StateStore
from engine.placement import KvCache
from engine.report import RequestReport
from engine.segments import Prompt
from tests.engine.helpers import (
    CODE,
    GREEDY,
    N_BATCH,
    K,
    engine_config,
    fim,
    prompt_tokens,
    reference,
    run,
)

edit_step = st.one_of(
    st.tuples(
        st.just("insert"),
        st.floats(0, 1),
        st.text(alphabet="abc xyz()\n:=_", min_size=1, max_size=6),
    ),
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 8)),
    st.tuples(
        st.just("type_at_cursor"),
        st.floats(0, 1),
        st.text(alphabet="abcdef ", min_size=1, max_size=3),
    ),
    st.tuples(st.just("switch_file"), st.integers(0, 2), st.just("")),
    st.tuples(st.just("rerank_repo"), st.integers(0, 1), st.just("")),
    st.tuples(st.just("restart"), st.just(0), st.just("")),
    # the user accepts the completion: the next prompt extends the generated text
    st.tuples(st.just("accept"), st.just(0), st.just("")),
)


# A trace replayed on an engine (`_replay_edit_trace`); 0.12 MB holds a handful of tiny-model
# checkpoints, so eviction happens; 4 MB also keeps full snapshots of the repository context.
edit_trace = {
    "trace": st.lists(edit_step, min_size=3, max_size=10),
    "seed": st.integers(0, 100),
    "budget_mb": st.sampled_from([0.12, 4.0]),
}
slow_examples = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


# Each example replays up to 10 edits with a fresh reference prefill per request: 25 examples
# took 117 s on 2 cores, past the 300 s default under load. Issue 15's patterns have their own
# trace test (test_editing_traces.py).
@pytest.mark.timeout(900)
@settings(max_examples=12, deadline=None, suppress_health_check=slow_examples)
@given(**edit_trace)
def test_random_edit_traces_match_a_fresh_full_prefill(
    model_path: Path, trace: list[tuple[str, Any, Any]], seed: int, budget_mb: float
) -> None:
    _replay_edit_trace(model_path, trace, seed, budget_mb, KvCache())


@pytest.mark.timeout(900)
@settings(max_examples=6, deadline=None, suppress_health_check=slow_examples)
@given(
    **edit_trace,
    kv_cache=st.sampled_from(
        [KvCache("q8_0", "q8_0"), KvCache("q4_0", "q4_0"), KvCache("q8_0", "f16", "off")]
    ),
)
def test_random_edit_traces_match_a_fresh_full_prefill_with_a_quantized_kv_cache(
    model_path: Path,
    trace: list[tuple[str, Any, Any]],
    seed: int,
    budget_mb: float,
    kv_cache: KvCache,
) -> None:
    _replay_edit_trace(model_path, trace, seed, budget_mb, kv_cache)


def _replay_edit_trace(
    model_path: Path,
    trace: list[tuple[str, Any, Any]],
    seed: int,
    budget_mb: float,
    kv_cache: KvCache,
) -> None:
    """Replay `trace` on an engine and compare every output with a fresh full prefill (in a
    context with the same KV cache types)."""
    rng = random.Random(seed)
    files = [CODE[i % 4] * 3 + CODE[(i + 1) % 4] for i in range(3)]
    repos = ["".join(CODE) * 2, "".join(reversed(CODE)) * 2]

    async def scenario(state_dir: str) -> None:
        # persist_min_tokens is low so the repository boundary also goes through full
        # snapshots (RAM and disk) when the repository context is re-ranked back and forth
        config = engine_config(
            model_path,
            checkpoint_memory_mb=budget_mb,
            state_dir=state_dir,
            persist_min_tokens=64,
            cache_type_k=kv_cache.type_k,
            cache_type_v=kv_cache.type_v,
            flash_attention=kv_cache.flash_attention,
        )
        engine = LocalEngine(config)
        await engine.start()
        try:
            current, repo = 0, 0
            cursor = len(files[0]) // 2
            completion = ""
            for op, where, arg in trace:
                text = files[current]
                if op == "insert":
                    at = int(where * len(text))
                    files[current] = text[:at] + arg + text[at:]
                    cursor = at + len(arg)
                elif op == "delete":
                    at = int(where * len(text))
                    files[current] = text[:at] + text[at + arg :]
                    cursor = at
                elif op == "type_at_cursor":
                    for ch in arg:  # one request per keystroke
                        text = files[current]
                        files[current] = text[:cursor] + ch + text[cursor:]
                        cursor += 1
                        await run(engine, fim(repos[repo], files[current], cursor))
                elif op == "switch_file":
                    current = where
                    cursor = rng.randrange(len(files[current]) + 1)
                elif op == "accept":
                    text = files[current]
                    files[current] = text[:cursor] + completion + text[cursor:]
                    cursor += len(completion)
                elif op == "restart":  # the editor restarts: state comes back from disk
                    await engine.close()
                    engine = LocalEngine(config)
                    await engine.start()
                else:
                    repo = where
                cursor = min(cursor, len(files[current]))
                prompt = fim(repos[repo], files[current], cursor)
                gen = engine.stream(prompt, GREEDY)
                completion = await gen.text()
                assert gen.token_ids == await reference(engine, prompt, GREEDY.max_tokens)
                stats = engine.stats()["interactive"]
                assert stats["peak_bytes"] <= stats["budget_bytes"]
        finally:
            await engine.close()

    with tempfile.TemporaryDirectory() as state_dir:
        asyncio.run(scenario(state_dir))


async def test_typing_reuses_everything_before_the_cursor(engine: LocalEngine) -> None:
    repo = "".join(CODE) * 4
    text = CODE[1] * 6
    cursor = len(text) // 2
    first = await run(engine, fim(repo, text, cursor))
    assert first.report is not None and first.report.restore_kind == "none"
    for ch in "x = 1":
        text = text[:cursor] + ch + text[cursor:]
        cursor += 1
        prompt = fim(repo, text, cursor)
        gen = await run(engine, prompt)
        report = gen.report
        assert report is not None
        assert report.restore_kind == "partial"
        # the checkpoint at the previous cursor: only the new char and the tail are read
        tail_tokens = len(engine._interactive.model.tokenize(prompt.segments[-1].text))  # type: ignore[union-attr]
        # (+ up to one DeltaNet chunk when the prompt must end on the same micro-batch
        # class as a plain prefill, see engine.batching.final_batch_rule)
        assert report.prefilled_tokens <= tail_tokens + 1 + DELTANET_CHUNK
        assert gen.token_ids == await reference(engine, prompt, GREEDY.max_tokens)


async def test_pure_append_restores_nothing(engine: LocalEngine) -> None:
    base = Prompt.of(("".join(CODE), K.REPO), ("def f():", K.LOCAL))
    await run(engine, base, params=GenerationParams(max_tokens=0))
    longer = Prompt.of(("".join(CODE), K.REPO), ("def f():", K.LOCAL), ("\n    return", K.TAIL))
    gen = await run(engine, longer)
    assert gen.report is not None
    base_tokens = gen.report.prompt_tokens - engine.count_tokens("\n    return")
    if base_tokens <= final_batch_rule(gen.report.prompt_tokens)[1]:
        assert gen.report.restore_kind == "append"
        assert gen.report.reused_tokens == base_tokens
    assert gen.token_ids == await reference(engine, longer, GREEDY.max_tokens)
    # the same prompt again: the live state already holds it, one token is re-read for logits
    again = await run(engine, longer)
    assert again.report is not None and again.report.prefilled_tokens <= DELTANET_CHUNK
    assert again.token_ids == gen.token_ids


def _count_decodes(
    runner: LaneRunner, cancel_at: int | None, gen_box: list[LocalGeneration]
) -> list[int]:
    """Wrap the session's decode: record batch sizes, cancel the request at call `cancel_at`."""
    session = runner.state.session
    assert session is not None
    original = session.decode
    calls: list[int] = []

    def decode(tokens: Any, start_pos: int, *, logits_last: bool) -> None:
        calls.append(len(tokens))
        original(tokens, start_pos, logits_last=logits_last)
        if cancel_at is not None and len(calls) == cancel_at:
            gen_box[0].cancel()

    session.decode = decode  # type: ignore[method-assign]
    return calls


async def test_cancel_during_prefill_stops_at_the_next_micro_batch(engine: LocalEngine) -> None:
    runner = engine._runner("interactive")
    box: list[LocalGeneration] = []
    calls = _count_decodes(runner, 3, box)
    prompt = Prompt.of(("".join(CODE) * 12, K.REPO), ("x", K.LOCAL))
    gen = engine.stream(prompt, GenerationParams(max_tokens=20))
    box.append(gen)
    with pytest.raises(asyncio.CancelledError):
        await gen.text()
    assert gen.report is not None and gen.report.cancelled
    assert len(calls) == 3
    prefilled = sum(calls)
    assert gen.report.prefilled_tokens == prefilled
    # the engine keeps what it prefilled and stays usable
    after = await run(engine, prompt)
    assert after.report is not None and after.report.reused_tokens == prefilled
    assert after.token_ids == await reference(engine, prompt, GREEDY.max_tokens)


async def test_cancel_during_decode_stops_within_one_token(engine: LocalEngine) -> None:
    runner = engine._runner("interactive")
    params = GenerationParams(max_tokens=30)
    # a prompt whose greedy continuation is a few tokens long (random weights may stop early)
    for local in ("def main():\n", "class A:\n    ", "x = [", "import "):
        prompt = Prompt.of(("".join(CODE), K.REPO), (local, K.LOCAL))
        expected = await run(engine, prompt, params=params)
        if len(expected.token_ids) >= 3:
            break
    assert len(expected.token_ids) >= 3, "no prompt generates a few tokens"
    await run(engine, Prompt.of(("reset", K.REPO)), params=GenerationParams(max_tokens=0))
    session = runner.state.session
    assert session is not None
    original = session.decode
    token_decodes: list[int] = []
    box: list[LocalGeneration] = []

    def decode(tokens: Any, start_pos: int, *, logits_last: bool) -> None:
        original(tokens, start_pos, logits_last=logits_last)
        if len(tokens) == 1:  # a generated token: cancel right after the first one
            token_decodes.append(start_pos)
            box[0].cancel()

    session.decode = decode  # type: ignore[method-assign]
    gen = engine.stream(prompt, params)
    box.append(gen)
    with pytest.raises(asyncio.CancelledError):
        await gen.text()
    assert gen.report is not None and gen.report.cancelled
    assert len(token_decodes) == 1  # nothing decoded after the cancel
    assert gen.token_ids == expected.token_ids[:1]


async def test_a_newer_stream_with_the_same_key_cancels_the_older(engine: LocalEngine) -> None:
    long_prompt = Prompt.of(("".join(CODE) * 12, K.REPO), ("a", K.LOCAL))
    older = engine.stream(long_prompt, GenerationParams(max_tokens=50), key="doc")
    newer = engine.stream(fim("".join(CODE), CODE[0], 5), GREEDY, key="doc")
    with pytest.raises(asyncio.CancelledError):
        await older.text()
    await newer.text()
    assert older.report is not None and older.report.cancelled
    assert newer.report is not None and not newer.report.cancelled


async def test_background_lane_does_not_block_interactive(engine: LocalEngine) -> None:
    background = engine.stream(
        Prompt.of(("".join(CODE) * 20, K.SYSTEM), ("explain", K.LOCAL)),
        GenerationParams(max_tokens=200),
        lane="background",
    )
    while engine.stats()["background"]["live_tokens"] == 0:  # its prefill is under way
        await asyncio.sleep(0.001)
    prompt = fim("".join(CODE), CODE[2], 10)
    started = time.perf_counter()
    interactive = await run(engine, prompt)
    interactive_done = time.perf_counter() - started
    assert not background.finished, "interactive work must not wait for the background lane"
    await background.text()
    assert interactive.report is not None and background.report is not None
    assert interactive_done * 1000 < background.report.ms["total"]
    assert interactive.token_ids == await reference(engine, prompt, GREEDY.max_tokens)


async def test_context_overflow_is_reported_and_the_engine_stays_usable(
    engine: LocalEngine,
) -> None:
    huge = Prompt.of(
        ("word " * 5000, K.REPO),
    )
    with pytest.raises(ContextOverflowError, match="exceeds the context window"):
        await engine.stream(huge, GREEDY).text()
    near = Prompt.of(
        ("".join(CODE), K.REPO),
    )
    n = engine.count_tokens("".join(CODE))
    with pytest.raises(ContextOverflowError):
        await engine.stream(near, GenerationParams(max_tokens=4096 - n + 1)).text()
    gen = await run(engine, near)
    assert gen.token_ids == await reference(engine, near, GREEDY.max_tokens)


async def test_count_tokens_is_thread_safe(engine: LocalEngine) -> None:
    texts = [c * (i + 1) for i, c in enumerate(CODE)]
    expected = [engine.count_tokens(t) for t in texts]
    results: list[list[int]] = []

    def worker() -> None:
        results.append([engine.count_tokens(t) for t in texts for _ in range(20)][::20])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    gen = engine.stream(
        Prompt.of(
            ("".join(CODE) * 6, K.REPO),
        ),
        GenerationParams(max_tokens=20),
    )
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    await gen.text()
    assert results == [expected] * 4


# -- model loading errors ----------------------------------------------------------------


async def _start_fails(path: Path, match: str) -> None:
    engine = LocalEngine(engine_config(path))
    with pytest.raises(ModelLoadError, match=match):
        await engine.start()
    await engine.close()


async def test_model_load_errors_are_clear(model_path: Path, tmp_path: Path) -> None:
    await _start_fails(tmp_path / "missing.gguf", "does not exist")
    text_file = tmp_path / "notes.gguf"
    text_file.write_text("not a model\n" * 10)
    await _start_fails(text_file, "not a GGUF")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(model_path.read_bytes()[: model_path.stat().st_size // 2])
    await _start_fails(truncated, "truncated")
    other_arch = tmp_path / "other.gguf"
    _write_unknown_arch(other_arch)
    await _start_fails(other_arch, "does not support the model architecture 'qcn-unknown'")
    # a good model still loads afterwards
    engine = LocalEngine(engine_config(model_path))
    await engine.start()
    try:
        assert engine.info().arch == "qwen3next" and engine.info().hybrid
        assert (await run(engine, fim("", CODE[0], 8))).report is not None
    finally:
        await engine.close()


def _write_unknown_arch(path: Path) -> None:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "qcn-unknown")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# -- persisted repository state ---------------------------------------------------------


def _persist_config(model_path: Path, state_dir: Path) -> EngineConfig:
    return engine_config(model_path, state_dir=state_dir, persist_min_tokens=256)


REPO_PROMPT = fim("".join(CODE) * 5, CODE[3] * 6, 250)


@dataclass
class PersistedRun:
    tokens: list[int]
    report: RequestReport
    reference: list[int]
    stats: dict[str, Any]
    segment_ends: list[int]  # token positions of the segment boundaries


async def _persisted_run(model_path: Path, state_dir: Path) -> PersistedRun:
    """One editor session: start, one completion, close (which persists the resume point)."""
    engine = LocalEngine(_persist_config(model_path, state_dir))
    await engine.start()
    try:
        gen = await run(engine, REPO_PROMPT)
        engine.flush_persisted()
        ends = list(itertools.accumulate(engine.count_tokens(s.text) for s in REPO_PROMPT.segments))
        assert gen.report is not None
        return PersistedRun(
            gen.token_ids,
            gen.report,
            await reference(engine, REPO_PROMPT, GREEDY.max_tokens),
            engine.stats(),
            ends,
        )
    finally:
        await engine.close()


async def test_restart_restores_the_repository_state_from_disk(
    model_path: Path, tmp_path: Path
) -> None:
    cold = await _persisted_run(model_path, tmp_path)
    assert cold.report.restore_kind == "none"
    assert cold.stats["disk"]["writes"] == 1  # the repository context, during the prefill
    warm = await _persisted_run(model_path, tmp_path)
    assert warm.report.restore_kind == "disk"
    # restored up to the cursor (end of LOCAL), persisted when the first engine closed
    assert warm.report.restored_from == warm.segment_ends[2]
    assert warm.tokens == cold.tokens == warm.reference
    # another file of the same repository: the repository context alone comes from disk
    other = fim(REPO_PROMPT.segments[0].text, CODE[1] * 3, 50)
    engine = LocalEngine(_persist_config(model_path, tmp_path))
    await engine.start()
    try:
        gen = await run(engine, other)
        assert gen.report is not None and gen.report.restore_kind == "disk"
        assert gen.report.restored_from == warm.segment_ends[0]
        assert gen.token_ids == await reference(engine, other, GREEDY.max_tokens)
    finally:
        await engine.close()


async def test_restart_resumes_elsewhere_in_the_file_from_a_persisted_checkpoint(
    model_path: Path, tmp_path: Path
) -> None:
    await _persisted_run(model_path, tmp_path)  # persists the cursor and checkpoints before it
    # The editor reopens the same file with the cursor further up (the local window moved).
    file_text = CODE[3] * 6
    earlier = fim(REPO_PROMPT.segments[0].text, file_text, 200, local_chars=40)
    engine = LocalEngine(_persist_config(model_path, tmp_path))
    await engine.start()
    try:
        repo_end = engine.count_tokens(REPO_PROMPT.segments[0].text)
        gen = await run(engine, earlier)
        report = gen.report
        assert report is not None and report.restore_kind == "disk"
        # Not just the repository context: a checkpoint inside the file was restored.
        assert report.restored_from is not None and report.restored_from > repo_end
        assert gen.token_ids == await reference(engine, earlier, GREEDY.max_tokens)
    finally:
        await engine.close()


def _state_files(state_dir: Path) -> Iterator[Path]:
    return (p for p in state_dir.rglob("*.val") if p.is_file())


async def test_corrupt_persisted_state_is_dropped_not_loaded(
    model_path: Path, tmp_path: Path
) -> None:
    cold = await _persisted_run(model_path, tmp_path)
    files = list(_state_files(tmp_path))
    # repository context, the state up to the cursor at shutdown, checkpoints before it
    assert len(files) >= 3
    for path in files:
        blob = bytearray(path.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        path.write_bytes(bytes(blob))
    after = await _persisted_run(model_path, tmp_path)
    assert after.report.restore_kind == "none"
    assert after.stats["disk"]["rejected"] == 2
    assert after.tokens == cold.tokens == after.reference


async def test_state_llama_rejects_is_dropped_and_the_state_cleaned(
    model_path: Path, tmp_path: Path
) -> None:
    cold = await _persisted_run(model_path, tmp_path / "first")
    engine = LocalEngine(_persist_config(model_path, tmp_path))
    await engine.start()
    try:
        # A well-formed entry (right key and checksum) whose state llama.cpp cannot parse.
        runner = engine._runner("interactive")
        store = runner.state.store
        assert isinstance(store, StateStore)
        tokens = prompt_tokens(runner, REPO_PROMPT)
        repo_end = len(runner.model.tokenize(REPO_PROMPT.segments[0].text))
        digest = prefix_digest(tokens, repo_end)
        store.save_async(digest, repo_end, b"\x00garbage state" * 100).result()
        gen = await run(engine, REPO_PROMPT)
        assert gen.report is not None and gen.report.restore_kind == "none"
        assert gen.token_ids == cold.tokens
        engine.flush_persisted()
        assert engine.stats()["disk"]["writes"] >= 1  # replaced by a good entry
    finally:
        await engine.close()


# -- plain transformer: partial seq_rm works, no checkpoints needed -----------------------


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: printable bytes map to themselves, others above 255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _write_plain_llama(path: Path, seed: int = 0) -> None:
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    n_embd, n_ff, n_layer, n_head = 64, 128, 2, 4
    alphabet = _byte_to_unicode()
    tokens = [alphabet[b] for b in range(256)] + ["Ġt", "<|endoftext|>"]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(8192)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * 257 + [3])
    writer.add_token_merges(["Ġ t"])
    writer.add_eos_token_id(257)
    writer.add_bos_token_id(257)
    writer.add_add_bos_token(False)

    def weight(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.2).astype(np.float32))

    weight("token_embd.weight", len(tokens), n_embd)
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    weight("output.weight", len(tokens), n_embd)
    for il in range(n_layer):
        writer.add_tensor(f"blk.{il}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{il}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            weight(f"blk.{il}.{name}.weight", n_embd, n_embd)
        weight(f"blk.{il}.ffn_gate.weight", n_ff, n_embd)
        weight(f"blk.{il}.ffn_up.weight", n_ff, n_embd)
        weight(f"blk.{il}.ffn_down.weight", n_embd, n_ff)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


async def test_plain_transformer_trims_its_cache_without_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "plain.gguf"
    _write_plain_llama(path)
    engine = LocalEngine(engine_config(path))
    await engine.start()
    try:
        assert not engine.info().hybrid and not engine.info().recurrent
        text = CODE[1] * 4
        cursor = len(text) // 2
        await run(engine, fim("".join(CODE), text, cursor))
        text = text[:cursor] + "z" + text[cursor:]
        prompt = fim("".join(CODE), text, cursor + 1)
        gen = await run(engine, prompt)
        report = gen.report
        assert report is not None and report.restore_kind == "partial"
        assert report.restored_from == report.reused_tokens > report.prompt_tokens // 2
        assert engine.stats()["interactive"]["checkpoints"] == 0
        assert gen.token_ids == await reference(engine, prompt, GREEDY.max_tokens)
    finally:
        await engine.close()


async def test_switching_back_to_an_earlier_repository_context_restores_a_full_snapshot(
    model_path: Path, tmp_path: Path
) -> None:
    engine = LocalEngine(_persist_config(model_path, tmp_path))
    await engine.start()
    try:
        repo_a, repo_b = "".join(CODE) * 4, "".join(reversed(CODE)) * 4
        first = fim(repo_a, CODE[0] * 3, 30)
        await run(engine, first)
        await run(engine, fim(repo_b, CODE[0] * 3, 30))
        back = fim(repo_a, CODE[0] * 3, 31)
        gen = await run(engine, back)
        assert gen.report is not None and gen.report.restore_kind == "full"
        # Not just the repository context: the prompt left was kept up to its anchor.
        assert gen.report.restored_from is not None
        assert gen.report.restored_from > engine.count_tokens(repo_a)
        assert engine.stats()["interactive"]["prompt_cache"]["kept"] == 2  # both prompts left
        assert gen.token_ids == await reference(engine, back, GREEDY.max_tokens)
    finally:
        await engine.close()


@pytest.mark.parametrize("partial_bytes", [0, 1 << 30])
async def test_the_checkpoints_persisted_at_shutdown_stay_within_their_byte_cap(
    model_path: Path, tmp_path: Path, partial_bytes: int
) -> None:
    """At real size a checkpoint is 75.4 MiB: the cap, not the count, bounds a shutdown."""
    engine = LocalEngine(
        dataclasses.replace(
            _persist_config(model_path, tmp_path), persist_partial_bytes=partial_bytes
        )
    )
    await engine.start()
    try:
        await run(engine, REPO_PROMPT)
    finally:
        await engine.close()
    store = StateStore(
        tmp_path,
        model_path=model_path,
        context_signature=f"n_batch={N_BATCH}|seq=1|{KvCache().signature}|exact",
        size_limit=1 << 30,
    )
    try:
        partials = [entry for entry in store.candidates(0, 1 << 30) if entry[2] is not None]
    finally:
        store.close()
    if partial_bytes == 0:
        assert partials == []
    else:
        assert 1 <= len(partials) <= 8
