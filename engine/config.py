"""The in-process engine's options, and what each lane derives from them."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from engine.backend import Lane
from engine.batching import DELTANET_CHUNK
from engine.errors import EngineError
from engine.placement import FlashAttention, KvCache, KvCacheType, WeightPlacement


@dataclass(frozen=True)
class EngineConfig:
    model_path: str | os.PathLike[str]
    n_ctx: int = 0  # 0: the model's training context
    n_threads: int | None = None  # None: one per available core
    # None: the cores the interactive lane leaves, at least one (see lane_configs)
    background_n_threads: int | None = None
    n_gpu_layers: int = 0
    # Memory placement, as llama.cpp's --cpu-moe / --n-cpu-moe / -ctk / -ctv / -fa / mmap.
    cpu_moe: bool = False
    n_cpu_moe: int = 0
    cache_type_k: KvCacheType = "f16"
    cache_type_v: KvCacheType = "f16"
    flash_attention: FlashAttention = "auto"
    mmap: bool = True
    mlock: bool = False
    checkpoint_interval: int = 256
    checkpoint_memory_mb: float = 1024
    # Full snapshots of prompts the interactive lane left (another file, another repository
    # context) and of the repository context: going back restores one instead of re-reading.
    prompt_cache_mb: float = 4096
    prefill_chunk: int = 256  # tokens per micro-batch: cancellation granularity during prefill
    background_n_ctx: int | None = None  # None: min(n_ctx, 32768)
    # None: a quarter of checkpoint_memory_mb, which then bounds both lanes together
    background_checkpoint_memory_mb: float | None = None
    background_prompt_cache_mb: float | None = None  # None: a quarter of the main prompt cache
    state_dir: str | os.PathLike[str] | None = None  # None: no persisted repository state
    persist_min_tokens: int = 1024
    persist_partials: int = 8  # recurrent-state checkpoints persisted with the resume point
    # ... and at most this many bytes of them: a shutdown is over in well under a second even
    # at real size (one Qwen3-Coder-Next checkpoint is 75.4 MiB: 2 of them, not 8).
    persist_partial_bytes: int = 160 << 20
    state_cache_bytes: int = 16 << 30
    token_memo_entries: int = 4096  # segments: a long file is many chunks
    # False: every request prefills its whole prompt in a cleared state; no checkpoint is
    # taken or restored and nothing is persisted (exactness checks, bug reports).
    prompt_cache: bool = True

    @property
    def weights(self) -> WeightPlacement:
        return WeightPlacement(
            n_gpu_layers=self.n_gpu_layers,
            cpu_moe=self.cpu_moe,
            n_cpu_moe=self.n_cpu_moe,
            mmap=self.mmap,
            mlock=self.mlock,
        )

    @property
    def kv_cache(self) -> KvCache:
        return KvCache(self.cache_type_k, self.cache_type_v, self.flash_attention)


@dataclass(frozen=True)
class LaneConfig:
    """One lane's llama context and checkpoint cache."""

    name: Lane
    n_ctx: int
    n_batch: int
    n_threads: int
    checkpoint_interval: int
    checkpoint_budget_bytes: int
    prompt_cache_bytes: int
    persist_min_tokens: int
    persist_partials: int
    persist_partial_bytes: int
    checkpoint_at_end: bool  # also snapshot the end of the prompt (prompts that grow by appends)
    kv_cache: KvCache
    prompt_cache: bool = True  # EngineConfig.prompt_cache


def lane_configs(config: EngineConfig, n_ctx_train: int) -> tuple[LaneConfig, LaneConfig]:
    """(interactive, background) lanes for a model trained on `n_ctx_train` tokens."""
    if config.prefill_chunk < DELTANET_CHUNK:
        raise EngineError(f"prefill_chunk must be at least {DELTANET_CHUNK} tokens")
    n_ctx = config.n_ctx or n_ctx_train
    if n_ctx_train > 0:
        n_ctx = min(n_ctx, n_ctx_train)
    budget = int(config.checkpoint_memory_mb * (1 << 20))
    if config.background_checkpoint_memory_mb is None:
        background_budget = budget // 4
        budget -= background_budget
    else:
        background_budget = int(config.background_checkpoint_memory_mb * (1 << 20))
    kv_cache = config.kv_cache  # checked before any model is loaded
    prompt_cache = int(config.prompt_cache_mb * (1 << 20))
    cores = max(1, len(os.sched_getaffinity(0)))
    n_threads = config.n_threads or cores
    # llama.cpp's CPU backend runs on OpenMP, which stops spin-waiting for work once the
    # process has more of its threads than cores: every parallel region then pays a thread
    # wake-up (the interactive lane decoded 15x slower after the background lane's first
    # request when both had all cores). So the lanes' threads stay within the cores together.
    background_threads = config.background_n_threads or max(1, cores - n_threads)
    interactive = LaneConfig(
        name="interactive",
        n_ctx=n_ctx,
        n_batch=config.prefill_chunk,
        n_threads=n_threads,
        checkpoint_interval=config.checkpoint_interval,
        checkpoint_budget_bytes=budget,
        prompt_cache_bytes=prompt_cache,
        persist_min_tokens=config.persist_min_tokens,
        persist_partials=config.persist_partials,
        persist_partial_bytes=config.persist_partial_bytes,
        checkpoint_at_end=False,
        prompt_cache=config.prompt_cache,
        kv_cache=kv_cache,
    )
    background = replace(
        interactive,
        name="background",
        n_ctx=config.background_n_ctx or min(n_ctx, 32768),
        n_threads=background_threads,
        checkpoint_budget_bytes=background_budget,
        prompt_cache_bytes=(
            int(config.background_prompt_cache_mb * (1 << 20))
            if config.background_prompt_cache_mb is not None
            else prompt_cache // 4
        ),
        checkpoint_at_end=True,  # chat turns grow by appending after the reply
    )
    return interactive, background
