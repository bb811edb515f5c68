"""`qcn-lsp doctor`'s memory fit: what the in-process engine needs at `model.contextLength`
(weights + attention KV + one recurrent state + the checkpoint budget) against the RAM this
machine has free, and the VRAM of a GPU a GPU build can use; when it does not fit, the setting
to change."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# (ok, what was found, what to do): qcn_lsp.doctor makes its findings of these.
Check = tuple[bool, str, str]
MIB = 1024 * 1024
# What the process needs besides the model: Python, pygls, the index, compute buffers.
OVERHEAD_BYTES = 512 * MIB
# contextLength suggestions are rounded down to this many tokens.
CONTEXT_STEP = 1024
MIN_CONTEXT = 256


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class MemoryNeed:
    """Bytes the in-process engine holds for one model at one context length."""

    weights: int
    kv_per_token: int
    context_length: int
    recurrent: int
    checkpoints: int
    layers: int  # 0 when the header does not say

    @property
    def kv(self) -> int:
        return self.kv_per_token * self.context_length

    @property
    def model(self) -> int:
        """What llama.cpp places on a device: weights, KV and the recurrent state."""
        return self.weights + self.kv + self.recurrent

    def on_gpu(self, gpu_layers: int) -> int:
        """The part of `model` that `model.gpuLayers` offloads (llama.cpp keeps each
        layer's KV with the layer)."""
        if gpu_layers == 0:
            return 0
        if gpu_layers < 0 or self.layers == 0:
            return self.model
        return int(self.model * min(1.0, gpu_layers / self.layers))


def available_ram() -> int | None:
    """Bytes of RAM free for a new process (MemAvailable: page cache counts as free)."""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def free_vram() -> int | None:
    """Free bytes on the first NVIDIA GPU, from nvidia-smi; None without one."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return int(out.split()[0]) * MIB
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def memory_fit(need: MemoryNeed, ram: int | None, vram: int | None, gpu_layers: int) -> Check:
    """Whether `need` fits: on the GPU what `gpu_layers` offloads (when `vram` is known),
    in RAM the rest plus the checkpoint budget."""
    gpu_part = need.on_gpu(gpu_layers) if vram is not None else 0
    host = need.model - gpu_part + need.checkpoints + OVERHEAD_BYTES
    what = (
        f"memory at model.contextLength {need.context_length}: weights "
        f"{human_bytes(need.weights)} + KV {human_bytes(need.kv)} + recurrent state "
        f"{human_bytes(need.recurrent)} + checkpoints {human_bytes(need.checkpoints)}"
    )
    if vram is not None:
        what += f"; GPU {human_bytes(gpu_part)} of {human_bytes(vram)} free"
        if gpu_part > vram:
            return False, what, _gpu_fix(need, vram)
    if ram is None:
        return True, what + "; free RAM unknown", ""
    what += f"; RAM {human_bytes(host)} of {human_bytes(ram)} free"
    if host <= ram:
        return True, what, ""
    return False, what, _ram_fix(need, ram, 1 - gpu_part / need.model if need.model else 1.0)


def _gpu_fix(need: MemoryNeed, vram: int) -> str:
    if need.layers and need.model > 0:
        layers = int(vram / (need.model / need.layers))
        if layers > 0:
            return f"set model.gpuLayers to {layers} or less (the rest runs on the CPU)"
    return "set model.gpuLayers to 0 (CPU only), or lower model.contextLength"


def _ram_fix(need: MemoryNeed, ram: int, host_share: float) -> str:
    """What to lower so that the host's share of the model, the checkpoints and the overhead
    fit in `ram`."""
    for_model = (ram - need.checkpoints - OVERHEAD_BYTES) / max(host_share, 1e-9)
    for_kv = for_model - need.weights - need.recurrent
    if need.kv_per_token and for_kv >= MIN_CONTEXT * need.kv_per_token:
        tokens = int(for_kv // need.kv_per_token) // CONTEXT_STEP * CONTEXT_STEP
        return f"lower model.contextLength to {max(MIN_CONTEXT, tokens)} or less"
    if need.checkpoints > 16 * MIB and ram > need.weights * host_share + OVERHEAD_BYTES:
        return "lower engine.checkpointMemoryMB, then model.contextLength"
    return (
        "the weights do not fit: a smaller quantization (qcn-lsp pull --quant ...), "
        "model.gpuLayers on a GPU build, or a remote server (backend.kind = openai)"
    )
