"""Whether the engine's llama contexts fit in memory, checked before llama.cpp allocates them.

A context too large for the machine is refused with the numbers and a context length that
fits, instead of being left to an allocation inside llama.cpp (which can fail, or succeed on
overcommitted memory and get the process killed later). The weights are not counted: they are
mapped from the file and the page cache can evict them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from engine.errors import ModelLoadError
from engine.gguf_info import GGUFInfoError, read_gguf_info

# Share of the available memory the contexts may take: llama.cpp's compute buffers, the
# checkpoint cache and the rest of the process need the remainder.
USABLE_SHARE = 0.8
GIB = 1 << 30


def available_bytes() -> int | None:
    """Memory the process can still use: MemAvailable, within a cgroup v2 limit if any."""
    available = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit.isdigit() and available is not None:
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return available


def check_contexts_fit(
    model_path: str | os.PathLike[str], lane_contexts: Sequence[int], available: int | None
) -> None:
    """ModelLoadError when contexts of `lane_contexts` tokens (interactive lane first) would
    need more than USABLE_SHARE of `available` bytes; nothing when it cannot be estimated."""
    try:
        info = read_gguf_info(Path(model_path))
    except GGUFInfoError:
        return
    per_token = info.kv_bytes_per_token
    if per_token is None or available is None or not lane_contexts:
        return
    state = info.recurrent_state_bytes or 0

    def needed(contexts: Sequence[int]) -> int:
        return sum(per_token * n + state for n in contexts)

    usable = int(available * USABLE_SHARE)
    total = needed(lane_contexts)
    if total <= usable:
        return
    first, rest = lane_contexts[0], list(lane_contexts[1:])
    fits = 0
    for candidate in (1 << k for k in range(8, 19)):  # 256 .. 262144 tokens
        trial = [candidate, *(min(n, candidate) for n in rest)]
        if candidate <= first and needed(trial) <= usable:
            fits = candidate
    advice = (
        f"set model.contextLength to {fits} or less" if fits else "use a smaller model"
    ) + ", or free memory"
    raise ModelLoadError(
        f"the model's contexts ({' + '.join(map(str, lane_contexts))} tokens, "
        f"{per_token / 1024:.0f} KiB of attention cache per token) need about "
        f"{total / GIB:.1f} GiB, but only {available / GIB:.1f} GiB of memory is available: "
        f"{advice}"
    )
