"""Sizes of the generated test models."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

PresetName = Literal["tiny", "small", "geometry"]


@dataclass(frozen=True)
class ModelPreset:
    """Sizes of one generated model (names follow the GGUF keys they fill)."""

    name: str
    embedding_length: int
    block_count: int
    full_attention_interval: int
    # Gated attention layers: the Q projection is twice `head_count * head_dim` (query + gate).
    head_count: int
    head_count_kv: int
    head_dim: int
    rope_dimension_count: int
    # Gated DeltaNet layers: key heads (`group_count`), value heads (`time_step_rank`, a
    # multiple of the key heads) and the per-head dimension (`state_size`) of both.
    ssm_state_size: int
    ssm_group_count: int
    ssm_time_step_rank: int
    ssm_conv_kernel: int
    expert_count: int
    expert_used_count: int
    expert_feed_forward_length: int
    expert_shared_feed_forward_length: int
    context_length: int
    rope_freq_base: float = 1.0e7
    rms_norm_eps: float = 1.0e-6


PRESETS: Mapping[str, ModelPreset] = MappingProxyType(
    {
        # One block (3 DeltaNet + 1 attention layer): loads and answers in milliseconds.
        "tiny": ModelPreset(
            name="tiny",
            embedding_length=64,
            block_count=4,
            full_attention_interval=4,
            head_count=2,
            head_count_kv=1,
            head_dim=32,
            rope_dimension_count=8,
            ssm_state_size=16,
            ssm_group_count=2,
            ssm_time_step_rank=4,
            ssm_conv_kernel=4,
            expert_count=8,
            expert_used_count=2,
            expert_feed_forward_length=32,
            expert_shared_feed_forward_length=32,
            context_length=262144,
        ),
        # Two blocks, wide enough that prefilling 16K-64K tokens takes seconds on 2 cores, so
        # that what the checkpoint cache saves is measurable.
        "small": ModelPreset(
            name="small",
            embedding_length=512,
            block_count=8,
            full_attention_interval=4,
            head_count=4,
            head_count_kv=2,
            head_dim=64,
            rope_dimension_count=16,
            ssm_state_size=64,
            ssm_group_count=4,
            ssm_time_step_rank=8,
            ssm_conv_kernel=4,
            expert_count=32,
            expert_used_count=4,
            expert_feed_forward_length=128,
            expert_shared_feed_forward_length=256,
            context_length=262144,
        ),
        # Qwen3-Coder-Next's own layer pattern and state geometry (48 layers = 12 x (3 Gated
        # DeltaNet + 1 gated attention); DeltaNet 16 key / 32 value heads of 128, conv kernel
        # 4; attention 16 Q / 2 KV heads of 256), so a recurrent checkpoint is the real
        # 75.4 MiB and attention KV the real 24 KiB per token, with a hidden size of 64 and
        # four tiny experts so that weights stay ~100 MB and a token costs milliseconds.
        "geometry": ModelPreset(
            name="geometry",
            embedding_length=64,
            block_count=48,
            full_attention_interval=4,
            head_count=16,
            head_count_kv=2,
            head_dim=256,
            rope_dimension_count=64,
            ssm_state_size=128,
            ssm_group_count=16,
            ssm_time_step_rank=32,
            ssm_conv_kernel=4,
            expert_count=4,
            expert_used_count=2,
            expert_feed_forward_length=32,
            expert_shared_feed_forward_length=32,
            context_length=262144,
        ),
    }
)
