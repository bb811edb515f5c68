"""What a GGUF file is, read from its header alone (no llama.cpp load).

Used by `qcn-lsp doctor` and by the engine to check a file before loading it and to explain a
file it cannot load. The header is parsed here rather than with `gguf.GGUFReader`, which builds
numpy views for every element of every array: on a real Qwen vocabulary (151,669 tokens and
151,387 merges) that took 20-30 s per read, before llama.cpp even started.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

GGUF_MAGIC = b"GGUF"

# Architectures whose layers mix a recurrent state with attention, or are purely recurrent:
# on these a partial `seq_rm` fails and the engine needs checkpoints.
RECURRENT_ARCHS = frozenset(
    {
        "qwen3next",
        "qwen35",
        "qwen35moe",
        "mamba",
        "mamba2",
        "rwkv6",
        "rwkv7",
        "arwkv7",
        "jamba",
        "falcon-h1",
        "granitehybrid",
        "lfm2",
        "plamo2",
        "nemotron_h",
    }
)


def expert_tensor_pattern(n_layers: int | None) -> str:
    """Names of the routed-expert weights (`blk.N.ffn_{gate,up,down}_exps.weight`, also the
    fused and chunked variants) of every layer, or of the first `n_layers`. The same pattern
    serves Python's `re` and llama.cpp's std::regex (tensor buffer overrides)."""
    layers = r"\d+" if n_layers is None else "(" + "|".join(map(str, range(n_layers))) + ")"
    return rf"^blk\.{layers}\.ffn_(gate|up|down|gate_up)_(ch)?exps\."


EXPERT_TENSOR = re.compile(expert_tensor_pattern(None))
_LAYER = re.compile(r"^blk\.(\d+)\.")

# Bytes per block and elements per block of the KV cache types qcn-lsp offers (ggml.c).
KV_CACHE_TYPES: dict[str, tuple[int, int]] = {"f16": (2, 1), "q8_0": (34, 32), "q4_0": (18, 32)}

# GGUF value types (gguf.GGUFValueType) of fixed size: struct format per type.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q"}
_SCALARS |= {11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# Arrays whose elements are kept (all others are skipped without decoding).
_KEPT_ARRAYS = frozenset({"tokenizer.ggml.tokens"})


class GGUFInfoError(ValueError):
    """The file is missing, not a GGUF, or its header cannot be read."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    n_bytes: int
    offset: int  # from the start of the file

    @property
    def layer(self) -> int | None:
        match = _LAYER.match(self.name)
        return int(match.group(1)) if match else None

    @property
    def expert(self) -> bool:
        return EXPERT_TENSOR.search(self.name) is not None


@dataclass(frozen=True)
class GGUFInfo:
    path: Path
    size_bytes: int
    architecture: str
    name: str | None
    context_length: int | None
    block_count: int | None
    attention_layers: int | None
    recurrent_layers: int | None
    recurrent_state_bytes: int | None
    has_chat_template: bool
    fim_tokens: bool
    tensors: tuple[TensorInfo, ...] = ()
    kv_elements_per_token: tuple[int, int] | None = None  # (K, V) over all attention layers

    @property
    def hybrid(self) -> bool:
        return self.architecture in RECURRENT_ARCHS

    @property
    def kv_bytes_per_token(self) -> int | None:
        """Attention KV per context token with llama.cpp's default f16 cache."""
        return self.kv_bytes_per_token_as("f16", "f16")

    @property
    def tensors_end(self) -> int | None:
        """Where the last tensor's data ends: a shorter file is truncated."""
        return max((t.offset + t.n_bytes for t in self.tensors), default=None)

    def kv_bytes_per_token_as(self, cache_type_k: str, cache_type_v: str) -> int | None:
        if self.kv_elements_per_token is None:
            return None
        k, v = self.kv_elements_per_token
        (k_block, k_n), (v_block, v_n) = KV_CACHE_TYPES[cache_type_k], KV_CACHE_TYPES[cache_type_v]
        return -(-k * k_block // k_n) + -(-v * v_block // v_n)


class _Header:
    """A sequential reader of GGUF header fields."""

    def __init__(self, fh: BinaryIO, path: Path) -> None:
        self._fh = fh
        self._path = path

    def take(self, n: int) -> bytes:
        data = self._fh.read(n)
        if len(data) != n:
            raise GGUFInfoError(f"{self._path}: the GGUF header ends early; the file is truncated")
        return data

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> bytes:
        return self.take(self.scalar("<Q"))

    def skip_string(self) -> None:
        self._fh.seek(self.scalar("<Q"), 1)

    def value(self, kind: int, keep: bool) -> Any:
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == _STRING:
            return self.string().decode("utf-8", errors="replace")
        if kind != _ARRAY:
            raise GGUFInfoError(f"{self._path}: unknown GGUF value type {kind}")
        item, count = self.scalar("<I"), self.scalar("<Q")
        if item == _STRING:
            if keep:
                return [self.string() for _ in range(count)]
            for _ in range(count):
                self.skip_string()
            return None
        if item not in _SCALARS:
            raise GGUFInfoError(f"{self._path}: unsupported GGUF array of type {item}")
        self._fh.seek(count * struct.calcsize(_SCALARS[item]), 1)
        return None

    def tell(self) -> int:
        return self._fh.tell()


def _read(path: Path) -> tuple[dict[str, Any], list[tuple[str, list[int], int, int]], int]:
    """(metadata, [(tensor name, dims, ggml type, relative offset)], start of tensor data)."""
    with path.open("rb") as fh:
        header = _Header(fh, path)
        magic = header.take(4)
        if magic != GGUF_MAGIC:
            raise GGUFInfoError(
                f"{path}: not a GGUF file (magic {magic!r}, expected {GGUF_MAGIC!r})"
            )
        version = header.scalar("<I")
        if version < 2:
            raise GGUFInfoError(f"{path}: GGUF version {version} is too old (2 or later needed)")
        n_tensors, n_kv = header.scalar("<Q"), header.scalar("<Q")
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = header.string().decode("utf-8", errors="replace")
            metadata[key] = header.value(header.scalar("<I"), keep=key in _KEPT_ARRAYS)
        tensors = []
        for _ in range(n_tensors):
            name = header.string().decode("utf-8", errors="replace")
            dims = [header.scalar("<Q") for _ in range(header.scalar("<I"))]
            tensors.append((name, dims, header.scalar("<I"), header.scalar("<Q")))
        alignment = int(metadata.get("general.alignment") or 32)
        data_start = -(-header.tell() // alignment) * alignment
    return metadata, tensors, data_start


def _tensor_bytes(dims: list[int], ggml_type: int) -> int:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    elements = 1
    for dim in dims:
        elements *= dim
    return elements // block * size


def read_gguf_info(path: str | Path) -> GGUFInfo:
    path = Path(path)
    if not path.is_file():
        raise GGUFInfoError(f"{path}: no such file")
    try:
        metadata, raw_tensors, data_start = _read(path)
        tensors = tuple(
            TensorInfo(name, _tensor_bytes(dims, kind), data_start + offset)
            for name, dims, kind, offset in raw_tensors
        )
    except (OSError, struct.error, ValueError, KeyError) as exc:
        if isinstance(exc, GGUFInfoError):
            raise
        raise GGUFInfoError(f"{path}: unreadable GGUF header ({exc})") from exc

    arch = str(metadata.get("general.architecture") or "")
    if not arch:
        raise GGUFInfoError(f"{path}: GGUF without general.architecture")

    def arch_int(key: str) -> int | None:
        value = metadata.get(f"{arch}.{key}")
        return int(value) if isinstance(value, int | float) else None

    blocks = arch_int("block_count")
    head_kv = arch_int("attention.head_count_kv")
    key_len = arch_int("attention.key_length")
    value_len = arch_int("attention.value_length")
    head_count = arch_int("attention.head_count")
    embd = arch_int("embedding_length")
    if key_len is None and head_count and embd:
        key_len = value_len = embd // head_count

    attention_layers = recurrent_layers = None
    recurrent_state = None
    if blocks is not None:
        if arch in RECURRENT_ARCHS:
            interval = arch_int("full_attention_interval") or 4
            attention_layers = blocks // interval
            recurrent_layers = blocks - attention_layers
            conv_kernel = arch_int("ssm.conv_kernel")
            state = arch_int("ssm.state_size")
            inner = arch_int("ssm.inner_size")
            groups = arch_int("ssm.group_count")
            if conv_kernel and state and inner and groups:
                conv_channels = inner + 2 * groups * state
                per_layer = (conv_kernel - 1) * conv_channels + inner * state
                recurrent_state = recurrent_layers * per_layer * 4  # f32
        else:
            attention_layers, recurrent_layers = blocks, 0

    kv_elements = None
    if attention_layers is not None and head_kv and key_len and value_len:
        kv_elements = (attention_layers * head_kv * key_len, attention_layers * head_kv * value_len)

    tokens = metadata.get("tokenizer.ggml.tokens") or []
    fim = {b"<|fim_prefix|>", b"<|fim_suffix|>", b"<|fim_middle|>"}.issubset(set(tokens))
    return GGUFInfo(
        path=path,
        size_bytes=path.stat().st_size,
        architecture=arch,
        name=metadata.get("general.name"),
        context_length=arch_int("context_length"),
        block_count=blocks,
        attention_layers=attention_layers,
        recurrent_layers=recurrent_layers,
        recurrent_state_bytes=recurrent_state,
        has_chat_template=metadata.get("tokenizer.chat_template") is not None,
        fim_tokens=fim,
        tensors=tensors,
        kv_elements_per_token=kv_elements,
    )
