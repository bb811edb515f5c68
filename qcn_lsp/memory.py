"""What the in-process engine will take in RAM and GPU memory with given settings, and what to
change when it does not fit (`qcn-lsp doctor`).

Read from the GGUF header alone. Per setting: the weights (routed experts in RAM with
`model.cpuMoe` / `model.nCpuMoe`, layers on the GPU with `model.gpuLayers`), the attention KV
of both lanes at the configured context and KV cache type, the live recurrent state of each
lane, the checkpoint budget (host RAM), and the full state copied out while the repository
context is persisted. llama.cpp's compute buffers (a few hundred MiB) come on top.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.gguf_info import GGUFInfo
from qcn_lsp.settings import ModelSettings, Settings

BACKGROUND_MAX_CTX = 32768  # the background lane's window (engine.config.lane_configs)


@dataclass(frozen=True)
class MemoryNeed:
    """Bytes per place; `parts` lists (what, bytes, place) with place "RAM" or "GPU"."""

    ram: int
    gpu: int
    persist_peak: int  # RAM copied out for a moment while the repository state is persisted
    parts: list[tuple[str, int, str]] = field(default_factory=list)


def estimate(info: GGUFInfo, settings: Settings, *, gpu: bool) -> MemoryNeed:
    model = settings.model
    layers = info.block_count or 0
    offloaded = 0 if not gpu or model.gpu_layers == 0 else layers
    if gpu and model.gpu_layers > 0:
        offloaded = min(model.gpu_layers, layers)
    first_offloaded = layers - offloaded  # llama.cpp offloads the last layers
    cpu_expert_layers = layers if model.cpu_moe else model.n_cpu_moe

    weights = {"RAM": 0, "GPU": 0}
    experts_ram = 0
    for tensor in info.tensors:
        layer = tensor.layer
        if layer is None:  # token_embd stays on the CPU; output goes with the last layer
            on_gpu = offloaded > 0 and offloaded >= layers and tensor.name != "token_embd.weight"
        else:
            on_gpu = layer >= first_offloaded
            if on_gpu and tensor.expert and layer < cpu_expert_layers:
                on_gpu = False
                experts_ram += tensor.n_bytes
        weights["GPU" if on_gpu else "RAM"] += tensor.n_bytes
    if not info.tensors:
        weights["RAM"] = info.size_bytes

    kv_per_token = info.kv_bytes_per_token_as(model.cache_type_k, model.cache_type_v) or 0
    context = model.context_length
    background = min(context, BACKGROUND_MAX_CTX)
    kv = kv_per_token * (context + background)
    recurrent = 2 * (info.recurrent_state_bytes or 0)
    state_place = "GPU" if offloaded else "RAM"
    checkpoints = settings.engine.checkpoint_memory_mb << 20

    kv_label = (
        f"attention KV (model.contextLength {context} + {background} for edits, "
        f"{kv_per_token / 1024:.1f} KiB a token with model.cacheTypeK/V "
        f"{model.cache_type_k}/{model.cache_type_v})"
    )
    parts = [
        ("weights", weights["RAM"], "RAM"),
        ("weights (model.gpuLayers)", weights["GPU"], "GPU"),
        (kv_label, kv, state_place),
        ("recurrent state of both lanes", recurrent, state_place),
        ("checkpoints (engine.checkpointMemoryMB)", checkpoints, "RAM"),
    ]
    parts = [p for p in parts if p[1] > 0]
    if experts_ram:
        parts.insert(1, ("of which routed experts (model.cpuMoe/nCpuMoe)", experts_ram, "RAM"))
    ram = weights["RAM"] + checkpoints + (0 if offloaded else kv + recurrent)
    gpu_bytes = weights["GPU"] + (kv + recurrent if offloaded else 0)
    persist_peak = (info.recurrent_state_bytes or 0) + kv_per_token * context
    return MemoryNeed(ram=ram, gpu=gpu_bytes, persist_peak=persist_peak, parts=parts)


def system_ram() -> tuple[int, int] | None:
    """(total, available) bytes of system RAM, where the OS says."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        total = int(fields["MemTotal"].split()[0]) * 1024
        available = int(fields.get("MemAvailable", fields["MemFree"]).split()[0]) * 1024
        return total, available
    except (OSError, KeyError, ValueError):
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            return total, total
        except (ValueError, OSError):
            return None


def _with_model(settings: Settings, **changes: Any) -> Settings:
    model: ModelSettings = replace(settings.model, **changes)
    return replace(settings, model=model)


def advice(info: GGUFInfo, settings: Settings, *, ram: int | None, vram: int | None) -> list[str]:
    """What to change, cheapest first, when the estimate exceeds RAM or GPU memory."""
    need = estimate(info, settings, gpu=vram is not None)
    tips: list[str] = []
    if vram is not None and need.gpu > vram:
        layers = info.block_count or 0
        for n in range(1, layers + 1):
            trial = _with_model(settings, cpu_moe=False, n_cpu_moe=n)
            on_gpu = estimate(info, trial, gpu=True).gpu
            if on_gpu <= vram:
                setting = f"model.nCpuMoe = {n}" if n < layers else "model.cpuMoe = true"
                tips.append(f"set {setting} (GPU {_gib(on_gpu)})")
                break
        quantized = _with_model(settings, cpu_moe=True, cache_type_k="q8_0", cache_type_v="q8_0")
        if not tips and estimate(info, quantized, gpu=True).gpu <= vram:
            tips.append("set model.cpuMoe = true and model.cacheTypeK/V = q8_0")
        if not tips:
            tips.append(
                "lower model.contextLength or model.gpuLayers, or use a remote backend "
                "(backend.kind = openai)"
            )
    if ram is not None and need.ram + need.persist_peak > ram:
        tips.append(
            "lower engine.checkpointMemoryMB or model.contextLength, set model.cacheTypeK/V = "
            "q8_0, or use a remote backend (backend.kind = openai)"
        )
    return tips


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"
