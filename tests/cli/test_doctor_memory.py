"""`qcn-lsp doctor`'s memory fit: the model at model.contextLength, plus the checkpoint
budget, against free RAM (and a GPU's free VRAM), and the setting to change when it is short."""

from __future__ import annotations

from pathlib import Path

import pytest

from qcn_lsp.cli import main
from qcn_lsp.doctor_memory import MemoryNeed, memory_fit

GIB = 1 << 30
# Qwen3-Coder-Next at Q4_K_M and the full window (docs: ~24 KiB of KV a token, 75 MiB state).
REAL = MemoryNeed(
    weights=48 * GIB,
    kv_per_token=24 * 1024,
    context_length=262144,
    recurrent=75 << 20,
    checkpoints=GIB,
    layers=48,
)


def test_a_machine_with_room_fits() -> None:
    ok, what, fix = memory_fit(REAL, 80 * GIB, None, -1)
    assert ok and not fix
    assert "weights 48.0 GiB + KV 6.0 GiB" in what
    assert "checkpoints 1.0 GiB" in what and "of 80.0 GiB free" in what


def test_a_long_context_that_does_not_fit_names_the_context_length_that_does() -> None:
    ok, _, fix = memory_fit(REAL, 54 * GIB, None, -1)
    assert not ok
    tokens = int(fix.split("model.contextLength to ")[1].split()[0])
    assert 0 < tokens < REAL.context_length and tokens % 1024 == 0
    assert memory_fit(
        MemoryNeed(**{**REAL.__dict__, "context_length": tokens}), 54 * GIB, None, -1
    )[0]


def test_weights_larger_than_ram_point_to_a_smaller_model_or_a_server() -> None:
    ok, _, fix = memory_fit(REAL, 24 * GIB, None, -1)
    assert not ok
    assert "--quant" in fix and "backend.kind = openai" in fix


def test_a_gpu_too_small_for_every_layer_names_the_gpu_layers_that_fit() -> None:
    ok, what, fix = memory_fit(REAL, 64 * GIB, 24 * GIB, -1)
    assert not ok and "of 24.0 GiB free" in what
    layers = int(fix.split("model.gpuLayers to ")[1].split()[0])
    assert 0 < layers < 48
    assert memory_fit(REAL, 64 * GIB, 24 * GIB, layers)[0]


def test_doctor_prints_the_fit_of_a_model(
    tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["doctor", "--model", str(tiny_model), "--no-load"])
    out = capsys.readouterr().out
    assert "[ok] memory at model.contextLength 32768: weights" in out
    assert "GiB free" in out
