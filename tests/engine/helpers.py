"""What the engine tests share: the engine's configuration, a fresh-prefill reference and
prompts in the completion layout.

The reference for every output is a fresh llama context that prefills the same token sequence
from position 0 and decodes greedily: whatever the engine restored, trimmed or reused, its
tokens must be identical.
"""

from __future__ import annotations

import asyncio
from array import array
from pathlib import Path
from typing import Any

from engine.config import EngineConfig
from engine.generation import LocalGeneration
from engine.host import LlamaSession, LoadedModel, Sampler
from engine.lane import LaneRunner
from engine.local import LocalEngine
from engine.params import GenerationParams
from engine.placement import KvCache
from engine.segments import Prompt, SegmentKind

K = SegmentKind
N_BATCH = 64
INTERVAL = 32
GREEDY = GenerationParams(max_tokens=5)


def engine_config(model_path: Path, **overrides: Any) -> EngineConfig:
    values: dict[str, Any] = {
        "model_path": model_path,
        "n_ctx": 4096,
        "n_threads": 2,
        "checkpoint_interval": INTERVAL,
        "prefill_chunk": N_BATCH,
        "background_n_ctx": 4096,
    }
    values.update(overrides)
    return EngineConfig(**values)


def prompt_tokens(runner: LaneRunner, prompt: Prompt) -> array[int]:
    tokens = array("i")
    for segment in prompt.segments:
        tokens.extend(runner.model.tokenize(segment.text))
    return tokens


def reference_tokens(
    model: LoadedModel, tokens: array[int], max_tokens: int, kv_cache: KvCache | None = None
) -> list[int]:
    """Greedy continuation after a full prefill in a fresh context (with `kv_cache`'s types)."""
    session = LlamaSession(model, n_ctx=4096, n_batch=N_BATCH, n_threads=2, kv_cache=kv_cache)
    sampler = Sampler(temperature=0, top_k=0, top_p=1.0, min_p=0.0, seed=0)
    try:
        for start in range(0, len(tokens), N_BATCH):
            chunk = tokens[start : start + N_BATCH]
            session.decode(chunk, start, logits_last=start + len(chunk) == len(tokens))
        out: list[int] = []
        for _ in range(max_tokens):
            token = sampler.sample(session)
            if model.is_eog(token):
                break
            out.append(token)
            session.decode([token], len(tokens) + len(out) - 1, logits_last=True)
        return out
    finally:
        sampler.close()
        session.close()


async def reference(engine: LocalEngine, prompt: Prompt, max_tokens: int) -> list[int]:
    runner = engine._runner("interactive")
    tokens = prompt_tokens(runner, prompt)
    # On the worker thread: llama contexts are not thread-safe, and this keeps one at a time.
    future = runner.executor.submit(
        reference_tokens, runner.model, tokens, max_tokens, runner.config.kv_cache
    )
    return await asyncio.wrap_future(future)


async def run(engine: LocalEngine, prompt: Prompt, **kwargs: Any) -> LocalGeneration:
    gen = engine.stream(prompt, kwargs.pop("params", GREEDY), **kwargs)
    await gen.text()
    return gen


CODE = [
    "def add(a, b):\n    return a + b\n\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n",
    "for i in range(10):\n    print(i * i)\n",
    "import os\nimport sys\n\nPATH = os.environ.get('PATH')\n",
]


def fim(repo: str, text: str, cursor: int, local_chars: int = 120) -> Prompt:
    window = max(0, cursor - local_chars)
    return Prompt.of(
        (repo, K.REPO),
        ("<|file_sep|>main.py\n<|fim_prefix|>" + text[:window], K.FILE_PREFIX),
        (text[window:cursor], K.LOCAL),
        ("<|fim_suffix|>" + text[cursor : cursor + 80] + "<|fim_middle|>", K.TAIL),
    )
