"""Where the weights and the attention KV live: the llama.cpp parameters behind the memory
settings users know from llama.cpp (`--cpu-moe`, `--n-cpu-moe N`, `-ctk`/`-ctv`, `-fa`,
`--load-mode`).

A 48 GB Q4 Qwen3-Coder-Next does not fit a 24 GB GPU, but its routed experts are ~95% of the
weights and only 10 of 512 run per token: keeping them in system RAM (a buffer-type override
per tensor name pattern, `llama_model_params.tensor_buft_overrides`) while the attention,
DeltaNet, shared-expert and output weights go to the GPU keeps most of the speed.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import llama_cpp

from engine.errors import EngineError
from engine.gguf_info import KV_CACHE_TYPES, expert_tensor_pattern

KvCacheType = Literal["f16", "q8_0", "q4_0"]
FlashAttention = Literal["auto", "on", "off"]

_GGML_TYPES = {
    "f16": llama_cpp.GGML_TYPE_F16,
    "q8_0": llama_cpp.GGML_TYPE_Q8_0,
    "q4_0": llama_cpp.GGML_TYPE_Q4_0,
}
_FLASH_ATTN = {
    "auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO,
    "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
    "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED,
}


@dataclass(frozen=True)
class WeightPlacement:
    """How the weights are loaded: offload, routed experts kept in RAM, mmap / mlock."""

    n_gpu_layers: int = 0
    cpu_moe: bool = False  # every layer's routed experts in system RAM
    n_cpu_moe: int = 0  # the routed experts of the first N layers in system RAM
    mmap: bool = True
    mlock: bool = False

    def __post_init__(self) -> None:
        if self.n_cpu_moe < 0:
            raise EngineError(f"n_cpu_moe must be >= 0, got {self.n_cpu_moe}")

    @property
    def load_mode(self) -> int:
        """llama.cpp's `--load-mode`: mmap alone is its default `auto` (mmap where the devices
        support it)."""
        if self.mmap:
            return (
                llama_cpp.LLAMA_LOAD_MODE_MMAP_MLOCK
                if self.mlock
                else llama_cpp.LLAMA_LOAD_MODE_AUTO
            )
        return llama_cpp.LLAMA_LOAD_MODE_MLOCK if self.mlock else llama_cpp.LLAMA_LOAD_MODE_NONE

    @property
    def expert_override(self) -> str | None:
        """The tensor-name pattern whose weights stay in system RAM, or None."""
        if self.cpu_moe:
            return expert_tensor_pattern(None)
        if self.n_cpu_moe:
            return expert_tensor_pattern(self.n_cpu_moe)
        return None


class _Override(ctypes.Structure):
    # struct llama_model_tensor_buft_override (llama.h); the binding leaves the field untyped.
    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


@functools.cache
def _library(name: str) -> ctypes.CDLL:
    from llama_cpp._ctypes_extensions import load_shared_library

    return load_shared_library(name, Path(llama_cpp.__file__).parent / "lib")


def _ggml_function(library: str, name: str, restype: Any, *argtypes: Any) -> Any:
    """A function of the ggml libraries llama-cpp-python ships but does not bind."""
    function = getattr(_library(library), name)
    function.argtypes = list(argtypes)
    function.restype = restype
    return function


def _cpu_buffer_type() -> int:
    # llama.cpp compares override targets with this very pointer.
    return int(_ggml_function("ggml-base", "ggml_backend_cpu_buffer_type", ctypes.c_void_p)())


@dataclass(frozen=True)
class GpuDevice:
    name: str
    description: str
    free_bytes: int
    total_bytes: int


_GGML_DEVICE_GPU = 1  # enum ggml_backend_dev_type (ggml-backend.h)


def gpu_devices() -> list[GpuDevice]:
    """The GPUs this llama.cpp build can offload to, with their memory (none on a CPU build)."""
    count = _ggml_function("ggml", "ggml_backend_dev_count", ctypes.c_size_t)
    get = _ggml_function("ggml", "ggml_backend_dev_get", ctypes.c_void_p, ctypes.c_size_t)
    kind = _ggml_function("ggml-base", "ggml_backend_dev_type", ctypes.c_int, ctypes.c_void_p)
    text = ctypes.c_char_p
    name = _ggml_function("ggml-base", "ggml_backend_dev_name", text, ctypes.c_void_p)
    description = _ggml_function("ggml-base", "ggml_backend_dev_description", text, ctypes.c_void_p)
    size_p = ctypes.POINTER(ctypes.c_size_t)
    memory = _ggml_function(
        "ggml-base", "ggml_backend_dev_memory", None, ctypes.c_void_p, size_p, size_p
    )
    devices = []
    for index in range(count()):
        device = get(index)
        if kind(device) != _GGML_DEVICE_GPU:
            continue
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        memory(device, ctypes.byref(free), ctypes.byref(total))
        devices.append(
            GpuDevice(
                name=(name(device) or b"").decode(errors="replace"),
                description=(description(device) or b"").decode(errors="replace"),
                free_bytes=free.value,
                total_bytes=total.value,
            )
        )
    return devices


class ModelParams:
    """`llama_model_params` for a placement, with the memory its pointers refer to (keep this
    object alive while the model loads)."""

    def __init__(self, placement: WeightPlacement) -> None:
        self.params = llama_cpp.llama_model_default_params()
        self.params.n_gpu_layers = placement.n_gpu_layers
        self.params.load_mode = placement.load_mode
        pattern = placement.expert_override
        self._overrides = None
        if pattern is not None:
            overrides = (_Override * 2)()  # terminated by an all-NULL entry
            overrides[0].pattern = pattern.encode()
            overrides[0].buft = _cpu_buffer_type()
            self._overrides = overrides
            self.params.tensor_buft_overrides = ctypes.cast(overrides, ctypes.c_void_p)


@dataclass(frozen=True)
class KvCache:
    """The attention KV cache's element types and whether attention uses flash attention."""

    type_k: KvCacheType = "f16"
    type_v: KvCacheType = "f16"
    flash_attention: FlashAttention = "auto"

    def __post_init__(self) -> None:
        for name, value in (("K", self.type_k), ("V", self.type_v)):
            if value not in KV_CACHE_TYPES:
                raise EngineError(
                    f"unknown {name} cache type {value!r} (known: {', '.join(KV_CACHE_TYPES)})"
                )
        if self.flash_attention not in _FLASH_ATTN:
            raise EngineError(
                f"flash attention must be auto, on or off, not {self.flash_attention!r}"
            )
        if self.type_v != "f16" and self.flash_attention == "off":
            # llama.cpp refuses it too, with only a log line.
            raise EngineError(
                f"a quantized V cache ({self.type_v}) needs flash attention: set flash "
                "attention to auto or on, or the V cache type to f16"
            )

    def apply(self, params: llama_cpp.llama_context_params) -> None:
        params.type_k = _GGML_TYPES[self.type_k]
        params.type_v = _GGML_TYPES[self.type_v]
        params.flash_attn_type = _FLASH_ATTN[self.flash_attention]

    @property
    def signature(self) -> str:
        """What a persisted state depends on (KV layout and element types)."""
        return f"kv={self.type_k}/{self.type_v}|fa={self.flash_attention}"
