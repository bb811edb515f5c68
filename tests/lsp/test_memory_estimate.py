"""`qcn-lsp doctor`'s memory estimate per setting, on Qwen3-Coder-Next's sizes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from engine.gguf_info import GGUFInfo, TensorInfo
from qcn_lsp.memory import advice, estimate
from qcn_lsp.settings import Settings

GIB = 1 << 30
LAYERS = 48


def _real_model() -> GGUFInfo:
    """A Q4 Qwen3-Coder-Next as its header describes it: ~46 GB of routed experts (512 of
    2048 x 512 per layer, ~4.8 bits a weight), ~2 GB of everything else."""
    tensors = [TensorInfo("token_embd.weight", 190_000_000, 0)]
    for layer in range(LAYERS):
        for part in ("gate", "up", "down"):
            tensors.append(TensorInfo(f"blk.{layer}.ffn_{part}_exps.weight", 320_000_000, 0))
        tensors.append(TensorInfo(f"blk.{layer}.attn_qkv.weight", 30_000_000, 0))
    tensors.append(TensorInfo("output.weight", 250_000_000, 0))
    return GGUFInfo(
        path=Path("Qwen3-Coder-Next-Q4_K_M.gguf"),
        size_bytes=sum(t.n_bytes for t in tensors),
        architecture="qwen3next",
        name="Qwen3-Coder-Next",
        context_length=262144,
        block_count=LAYERS,
        attention_layers=12,
        recurrent_layers=36,
        recurrent_state_bytes=79_036_416,
        has_chat_template=True,
        fim_tokens=True,
        tensors=tuple(tensors),
        kv_elements_per_token=(12 * 2 * 256, 12 * 2 * 256),
    )


def _settings(**model: object) -> Settings:
    settings, warnings = Settings().merged({"model": model}, "test")
    assert not warnings
    return settings


def test_cpu_only_everything_is_in_ram() -> None:
    info = _real_model()
    need = estimate(info, _settings(), gpu=False)
    assert need.gpu == 0
    kv = 24 * 1024 * (32768 + 32768)
    assert need.ram == info.size_bytes + kv + 2 * 79_036_416 + (1024 << 20)
    assert need.persist_peak == 79_036_416 + 24 * 1024 * 32768


def test_a_24_gb_gpu_fits_with_the_experts_in_ram() -> None:
    info = _real_model()
    offloaded = estimate(info, _settings(), gpu=True)
    assert offloaded.gpu > 40 * GIB  # the whole model does not fit a 24 GB card
    moe = estimate(info, _settings(cpuMoe=True), gpu=True)
    assert moe.gpu < 5 * GIB
    assert moe.ram - offloaded.ram == 48 * 3 * 320_000_000  # the experts moved to RAM
    tips = advice(info, _settings(), ram=128 * GIB, vram=24 * GIB)
    n = int(tips[0].split("model.nCpuMoe = ")[1].split()[0])
    assert estimate(info, _settings(nCpuMoe=n), gpu=True).gpu <= 24 * GIB
    assert estimate(info, _settings(nCpuMoe=n - 1), gpu=True).gpu > 24 * GIB


def test_a_quantized_kv_cache_and_a_shorter_context_shrink_the_kv() -> None:
    info = _real_model()
    f16 = estimate(info, _settings(contextLength=262144), gpu=False)
    q8 = estimate(
        info, _settings(contextLength=262144, cacheTypeK="q8_0", cacheTypeV="q8_0"), gpu=False
    )
    kv_f16 = 24 * 1024 * (262144 + 32768)
    assert f16.ram - q8.ram == kv_f16 - kv_f16 * 17 // 32
    assert advice(info, replace(_settings(contextLength=262144)), ram=16 * GIB, vram=None)


def test_doctor_estimates_for_the_settings_given(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from qcn_lsp.cli import main

    args = ["doctor", "--model", str(tiny_model), "--cache-dir", str(tmp_path), "--no-load"]
    main([*args, "--setting", "model.contextLength=4096"])
    default = capsys.readouterr().out
    assert "model.contextLength 4096 + 4096 for edits, 0.1 KiB a token" in default
    assert "[ok] RAM: needs" in default
    main([*args, "--setting", "model.contextLength=4096", "--setting", "model.cacheTypeV=q8_0"])
    assert "model.cacheTypeK/V f16/q8_0" in capsys.readouterr().out
    assert main([*args, "--setting", "model.cacheTypeV=q5_1"]) == 2
    assert "model.cacheTypeV" in capsys.readouterr().err
