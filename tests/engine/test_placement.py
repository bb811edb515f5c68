"""Memory settings (experts in system RAM, KV cache type, flash attention, mmap / mlock) on a
CPU build: the model loads and answers with each, and llama.cpp's log reports the placement it
was asked for. (Offloading itself needs a GPU build; the overrides are the same.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from engine.config import EngineConfig
from engine.errors import EngineError
from engine.formats import fim_prompt
from engine.local import LocalEngine
from engine.params import GenerationParams
from engine.testing.presets import PRESETS

LAYERS = PRESETS["tiny"].block_count
EXPERTS = {
    f"blk.{i}.ffn_{part}_exps.weight" for i in range(LAYERS) for part in ("gate", "up", "down")
}
OVERRIDDEN = re.compile(r"tensor (\S+) \(.*\) buffer type overridden to CPU")


async def _load_and_answer(model: Path, caplog: pytest.LogCaptureFixture, **memory: Any) -> str:
    """llama.cpp's log while loading with `memory` and answering one completion."""
    caplog.clear()
    with caplog.at_level(5, logger="engine.host"):
        engine = LocalEngine(EngineConfig(model_path=model, n_ctx=1024, n_threads=2, **memory))
        await engine.start()
        try:
            prompt = fim_prompt("demo", [], "main.py", "def add(a, b):\n    return ", "\n")
            assert len(await engine.stream(prompt, GenerationParams(max_tokens=4)).text()) > 0
        finally:
            await engine.close()
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "engine.host")


def _overridden(log: str) -> set[str]:
    return set(OVERRIDDEN.findall(log))


async def test_cpu_moe_keeps_every_layers_routed_experts_in_system_ram(
    tiny_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = await _load_and_answer(tiny_model, caplog, cpu_moe=True)
    assert _overridden(log) == EXPERTS  # the shared expert, router and attention stay put
    assert not _overridden(await _load_and_answer(tiny_model, caplog))


async def test_n_cpu_moe_keeps_the_first_layers_experts_in_system_ram(
    tiny_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = await _load_and_answer(tiny_model, caplog, n_cpu_moe=2)
    assert _overridden(log) == {name for name in EXPERTS if name.startswith(("blk.0.", "blk.1."))}


@pytest.mark.parametrize(
    ("memory", "load_mode", "buffer"),
    [
        ({}, "mmap", "CPU_Mapped model buffer size"),
        ({"mmap": False}, "none", "CPU model buffer size"),
        ({"mlock": True}, "mmap+mlock", "CPU_Mapped model buffer size"),
        ({"mmap": False, "mlock": True}, "mlock", "CPU model buffer size"),
    ],
)
async def test_mmap_and_mlock_choose_llamas_load_mode(
    tiny_model: Path,
    caplog: pytest.LogCaptureFixture,
    memory: dict[str, bool],
    load_mode: str,
    buffer: str,
) -> None:
    log = await _load_and_answer(tiny_model, caplog, **memory)
    assert f"(load_mode = {load_mode})" in log
    assert buffer in log


@pytest.mark.parametrize(
    ("type_k", "type_v", "flash"),
    [
        ("q8_0", "q8_0", "auto"),
        ("q4_0", "q4_0", "on"),
        ("q8_0", "f16", "off"),
        ("f16", "f16", "off"),
    ],
)
async def test_kv_cache_types_and_flash_attention(
    tiny_model: Path, caplog: pytest.LogCaptureFixture, type_k: str, type_v: str, flash: str
) -> None:
    log = await _load_and_answer(
        tiny_model, caplog, cache_type_k=type_k, cache_type_v=type_v, flash_attention=flash
    )
    assert re.search(rf"K \({type_k}\): .* V \({type_v}\):", log)
    expected = "disabled" if flash == "off" else "enabled"
    assert re.search(rf"flash_attn\s+= {expected}", log) or (
        flash == "auto" and "enabling flash_attn since it is required for quantized V" in log
    )


async def test_a_quantized_v_cache_without_flash_attention_is_refused_before_loading(
    tiny_model: Path,
) -> None:
    engine = LocalEngine(
        EngineConfig(model_path=tiny_model, cache_type_v="q8_0", flash_attention="off")
    )
    with pytest.raises(EngineError, match=r"quantized V cache .* needs flash attention"):
        await engine.start()
    await engine.close()


async def test_the_persisted_state_is_keyed_by_the_kv_cache_layout(
    tiny_model: Path, tmp_path: Path
) -> None:
    """A state saved with one KV type is never offered to a context with another."""
    # 721 tokens: a plain prefill ends with a 209-token batch, so the engine may resume at the
    # repository boundary (engine.batching) and persists it
    text = "def add(a, b):\n    return a + b\n" * 41
    prompt = fim_prompt("demo", [("util.py", text)], "main.py", "x = ", "\n")
    params = GenerationParams(max_tokens=2)

    async def first_restore(**memory: Any) -> str:
        config = EngineConfig(
            model_path=tiny_model, n_ctx=2048, state_dir=tmp_path, persist_min_tokens=64, **memory
        )
        engine = LocalEngine(config)
        await engine.start()
        try:
            gen = engine.stream(prompt, params)
            await gen.text()
            engine.flush_persisted()
            assert gen.report is not None
            return gen.report.restore_kind
        finally:
            await engine.close()

    assert await first_restore() == "none"
    assert await first_restore() == "disk"
    assert await first_restore(cache_type_k="q8_0", cache_type_v="q8_0") == "none"
