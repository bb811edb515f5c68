"""What a GGUF file is, read from its header alone (no llama.cpp load).

Used by `qcn-lsp doctor` and by the engine to explain a file it cannot load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


class GGUFInfoError(ValueError):
    """The file is missing, not a GGUF, or its header cannot be read."""


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
    kv_bytes_per_token: int | None
    recurrent_state_bytes: int | None
    has_chat_template: bool
    fim_tokens: bool

    @property
    def hybrid(self) -> bool:
        return self.architecture in RECURRENT_ARCHS


def _field(reader: Any, key: str) -> Any:
    field = reader.get_field(key)
    if field is None:
        return None
    value = field.contents()
    return value


def read_gguf_info(path: str | Path) -> GGUFInfo:
    from gguf import GGUFReader

    path = Path(path)
    if not path.is_file():
        raise GGUFInfoError(f"{path}: no such file")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise GGUFInfoError(f"{path}: not a GGUF file (magic {magic!r}, expected {GGUF_MAGIC!r})")
    try:
        reader = GGUFReader(path, "r")
    except Exception as exc:  # the gguf package raises assorted errors on truncated files
        raise GGUFInfoError(
            f"{path}: unreadable GGUF file ({exc}); the file may be truncated"
        ) from exc

    arch = str(_field(reader, "general.architecture") or "")
    if not arch:
        raise GGUFInfoError(f"{path}: GGUF without general.architecture")

    def arch_int(key: str) -> int | None:
        value = _field(reader, f"{arch}.{key}")
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

    kv_per_token = None
    if attention_layers is not None and head_kv and key_len and value_len:
        kv_per_token = attention_layers * head_kv * (key_len + value_len) * 2  # f16 cache

    tokens = _field(reader, "tokenizer.ggml.tokens") or []
    fim = {"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"}.issubset(set(tokens))
    return GGUFInfo(
        path=path,
        size_bytes=path.stat().st_size,
        architecture=arch,
        name=_field(reader, "general.name"),
        context_length=arch_int("context_length"),
        block_count=blocks,
        attention_layers=attention_layers,
        recurrent_layers=recurrent_layers,
        kv_bytes_per_token=kv_per_token,
        recurrent_state_bytes=recurrent_state,
        has_chat_template=_field(reader, "tokenizer.chat_template") is not None,
        fim_tokens=fim,
    )
