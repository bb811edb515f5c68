"""Keystroke latency of LocalEngine vs stock llama-cpp-python on a hybrid (qwen3next) model.

    PYTHONPATH=. python bench/keystroke.py --contexts 1k,16k,64k [--restart]

Writes the `small` test model with Qwen's real vocabulary (`--vocabulary bytes` for the
byte-level test vocabulary) into the cache directory, builds repository context of each size
from standard-library files, and replays a typing trace (insertions and a few backspaces in the
middle of a real source file) as Qwen repo-level FIM prompts: REPO | FILE_PREFIX | LOCAL | TAIL.
Every configuration runs in a subprocess of its own so peak RSS is per configuration. The
stock baseline feeds the very same token sequences to `llama_cpp.Llama.generate`.
`--restart` also measures a restart with the repository state persisted on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.models import add_model_arguments, bench_model  # noqa: E402
from engine.config import EngineConfig  # noqa: E402
from engine.formats import (  # noqa: E402
    CHUNK_CHARS,
    DEFAULT_SUFFIX_CHARS,
    fim_prompt,
    repo_context_text,
)
from engine.lane import LaneRunner  # noqa: E402
from engine.local import LocalEngine  # noqa: E402
from engine.params import GenerationParams  # noqa: E402
from engine.segments import Prompt  # noqa: E402

STDLIB = Path(os.__file__).parent
REPO_NAME = "cpython"
CURRENT_FILE = STDLIB / "cmd.py"
TYPED = "value = self.lastcmd or line\n"
BACKSPACE = "\b"
# Typing with two corrections: "valeu" -> "value", "lstcmd" -> "lastcmd".
TRACE = "vale\b\bue = self.ls\btcmd\b\b\b\b\bastcmd or line\n"
assert TRACE.count(BACKSPACE) and TYPED


def parse_size(text: str) -> int:
    text = text.strip().lower()
    return int(float(text[:-1]) * 1024) if text.endswith("k") else int(text)


RepoFiles = list[tuple[str, str]]


def repo_context(
    count_tokens: Any, target_tokens: int, skip: Collection[Path] = (CURRENT_FILE,)
) -> RepoFiles:
    """Standard-library files as repository context, cut to about `target_tokens` tokens."""
    files: RepoFiles = []
    total = count_tokens(repo_context_text(REPO_NAME, []))
    for path in sorted(STDLIB.glob("*.py")):
        if path in skip:
            continue
        name, content = f"Lib/{path.name}", path.read_text(errors="replace")
        n = count_tokens(repo_context_text("", [(name, content)]))
        if total + n > target_tokens:
            files.append((name, content[: int(len(content) * (target_tokens - total) / n)]))
            break
        files.append((name, content))
        total += n
    return files


def keystroke_prompts(files: RepoFiles, args: argparse.Namespace) -> list[Prompt]:
    """The prompts the language server builds (engine.formats.fim_prompt, by default with the
    chunk and suffix sizes the server uses) for each state of the typing trace."""
    text = CURRENT_FILE.read_text()
    lines = text.splitlines(keepends=True)
    cursor = sum(len(line) for line in lines[: int(len(lines) * args.cursor_at)])  # a line start

    def prompt() -> Prompt:
        return fim_prompt(
            REPO_NAME,
            files,
            f"Lib/{CURRENT_FILE.name}",
            text[:cursor],
            text[cursor:],
            chunk_chars=args.chunk_chars,
            suffix_chars=args.suffix_chars,
        )

    prompts = [prompt()]
    for ch in TRACE:
        if ch == BACKSPACE:
            text = text[: cursor - 1] + text[cursor:]
            cursor -= 1
        else:
            text = text[:cursor] + ch + text[cursor:]
            cursor += 1
        prompts.append(prompt())
    return prompts


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def decode_floor(runner: LaneRunner, n_tokens: int) -> float:
    """ms of one bare llama_decode of `n_tokens` at the end of the live context (on the worker).

    The part of a keystroke's TTFT that no cache can remove: the new tokens still attend over
    the whole context, so this grows with the context length.
    """
    state = runner.state
    session = state.session
    assert session is not None
    tokens = state.live[-n_tokens:]
    step = session.n_batch
    started = time.perf_counter()
    for first in range(0, len(tokens), step):
        batch = tokens[first : first + step]
        last = first + step >= len(tokens)
        session.decode(batch, len(state.live) + first, logits_last=last)
    elapsed = (time.perf_counter() - started) * 1000
    state.live.extend(tokens)  # keep the engine's view of the state exact
    return elapsed


async def run_engine(args: argparse.Namespace, context: int) -> dict[str, Any]:
    config = EngineConfig(
        model_path=args.model,
        n_ctx=context + 8192,
        n_threads=args.threads,
        checkpoint_interval=args.interval,
        state_dir=args.state_dir,
    )
    t_load = time.perf_counter()
    engine = LocalEngine(config)
    await engine.start()
    load_ms = (time.perf_counter() - t_load) * 1000
    repo = repo_context(engine.count_tokens, context)
    prompts = keystroke_prompts(repo, args)[: args.keystrokes + 1]
    params = GenerationParams(max_tokens=args.max_tokens)
    rows: list[dict[str, Any]] = []
    for prompt in prompts:
        gen = engine.stream(prompt, params, key="bench")
        await gen.text()
        report = gen.report
        assert report is not None
        rows.append(
            {
                "prompt_tokens": report.prompt_tokens,
                "prefilled": report.prefilled_tokens,
                "restore": report.restore_kind,
                "ttft_ms": report.ms.get("first_token", report.ms["total"]),
                "restore_ms": report.ms["restore"],
                "total_ms": report.ms["total"],
            }
        )
    floor_ms = None
    if len(rows) > 1:
        n_tail = int(statistics.median(r["prefilled"] for r in rows[1:]))
        runner = engine._runner("interactive")
        floor_ms = await asyncio.wrap_future(runner.executor.submit(decode_floor, runner, n_tail))
    engine.flush_persisted()
    stats = engine.stats()
    await engine.close()
    result: dict[str, Any] = {
        "kind": "engine",
        "context": context,
        "load_ms": load_ms,
        "first_request": rows[0],
        "prompt_tokens": rows[0]["prompt_tokens"],
        "checkpoint_bytes": stats["interactive"]["bytes"],
        "checkpoints": stats["interactive"]["checkpoints"],
        "peak_rss_mb": peak_rss_mb(),
    }
    keys = rows[1:]
    if keys:
        result |= {
            "keystrokes": len(keys),
            "prefilled_per_key_median": statistics.median(r["prefilled"] for r in keys),
            "prefilled_per_key_max": max(r["prefilled"] for r in keys),
            "ttft_median_ms": statistics.median(r["ttft_ms"] for r in keys),
            "ttft_p95_ms": _p95([r["ttft_ms"] for r in keys]),
            "restore_median_ms": statistics.median(r["restore_ms"] for r in keys),
            "decode_floor_ms": floor_ms,
            "restores": sorted({r["restore"] for r in keys}),
            "per_key": [[r["prefilled"], round(r["ttft_ms"], 1)] for r in keys],
        }
    return result


def run_stock(args: argparse.Namespace, context: int) -> dict[str, Any]:
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(args.model),
        n_ctx=context + 8192,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )

    def count_tokens(text: str) -> int:
        return len(llm.tokenize(text.encode(), add_bos=False, special=True))

    repo = repo_context(count_tokens, context)
    # Each keystroke is a full prefill for the stock path (its seq_rm fails on hybrid memory
    # and generate() resets), so no warm-up request is needed before measuring keystrokes.
    prompts = keystroke_prompts(repo, args)[1 : args.keystrokes + 1]
    ttfts = []
    for prompt in prompts:
        # The same token sequence the engine sees: segments tokenized one by one.
        tokens = [
            t
            for seg in prompt.segments
            for t in llm.tokenize(seg.text.encode(), add_bos=False, special=True)
        ]
        started = time.perf_counter()
        for _token in llm.generate(tokens, top_k=1, temp=0.0):
            break
        ttfts.append((time.perf_counter() - started) * 1000)
    return {
        "kind": "stock",
        "context": context,
        "prompt_tokens": len(tokens),
        "keystrokes": len(ttfts),
        "ttft_median_ms": statistics.median(ttfts),
        "ttft_p95_ms": _p95(ttfts),
        "peak_rss_mb": peak_rss_mb(),
    }


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def run_child(
    args: argparse.Namespace,
    kind: str,
    context: int,
    *,
    keystrokes: int,
    state_dir: str = "",
    cursor_at: float = 0.5,
) -> dict[str, Any]:
    options = {
        "--child": kind,
        "--contexts": context,
        "--model": args.model,
        "--threads": args.threads,
        "--max-tokens": args.max_tokens,
        "--keystrokes": keystrokes,
        "--cursor-at": cursor_at,
        "--interval": args.interval,
        "--chunk-chars": args.chunk_chars,
        "--suffix-chars": args.suffix_chars,
    }
    if state_dir:
        options["--state-dir"] = state_dir
    cmd = [sys.executable, __file__, *(str(x) for pair in options.items() for x in pair)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_restart(args: argparse.Namespace, context: int) -> dict[str, Any]:
    """First completion of a fresh process: cold, then after a restart with persisted state.

    "same place": the editor reopens the file at the cursor where the last session closed
    (state persisted up to the cursor at shutdown). "elsewhere": the first completion is at
    another line of the file (only the repository context comes from disk).
    """
    import tempfile

    args.cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.cache_dir) as state_dir:
        cold = run_child(args, "engine", context, keystrokes=0, state_dir=state_dir)
        same = run_child(args, "engine", context, keystrokes=0, state_dir=state_dir)
        elsewhere = run_child(
            args, "engine", context, keystrokes=0, state_dir=state_dir, cursor_at=0.3
        )
    result: dict[str, Any] = {"kind": "restart", "context": context}
    cold_ms = cold["first_request"]["ttft_ms"]
    result["cold_ms"] = cold_ms
    for name, run in (("same_place", same), ("elsewhere", elsewhere)):
        first = run["first_request"]
        result[name] = {
            "ttft_ms": first["ttft_ms"],
            "restore": first["restore"],
            "prefilled": first["prefilled"],
            "load_ms": run["load_ms"],
            "fraction_of_cold": first["ttft_ms"] / cold_ms,
        }
        print(
            f"restart {context // 1024}K, {name}: first completion {first['ttft_ms']:.0f} ms "
            f"({first['restore']}, {first['prefilled']} tokens prefilled; model load "
            f"{run['load_ms']:.0f} ms before it) vs cold {cold_ms:.0f} ms: "
            f"1/{cold_ms / first['ttft_ms']:.0f}",
            flush=True,
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", default="1k,16k")
    add_model_arguments(parser)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache" / "bench")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--stock-keystrokes", type=int, default=3)
    parser.add_argument("--keystrokes", type=int, default=len(TRACE), help=argparse.SUPPRESS)
    parser.add_argument("--cursor-at", type=float, default=0.5, help=argparse.SUPPRESS)
    parser.add_argument("--interval", type=int, default=256)
    parser.add_argument("--chunk-chars", type=int, default=CHUNK_CHARS)
    parser.add_argument("--suffix-chars", type=int, default=DEFAULT_SUFFIX_CHARS)
    parser.add_argument("--no-stock", action="store_true")
    parser.add_argument(
        "--restart", action="store_true", help="also measure a restart with persisted state"
    )
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument("--child", choices=["engine", "stock"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    contexts = [parse_size(c) for c in args.contexts.split(",")]

    if args.child:
        result = (
            asyncio.run(run_engine(args, contexts[0]))
            if args.child == "engine"
            else run_stock(args, contexts[0])
        )
        print(json.dumps(result))
        return

    args.model = args.model or bench_model("small", args.vocabulary, args.cache_dir)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cpu = platform.processor() or platform.machine()
    with open("/proc/loadavg") as fh:
        load = " ".join(fh.read().split()[:3])
    print(f"model {args.model}; {cpu}, {args.threads} threads; load average {load}; {when}")
    print(f"file {CURRENT_FILE}; trace of {len(TRACE)} keystrokes")
    results = []
    for context in contexts:
        ours = run_child(args, "engine", context, keystrokes=len(TRACE))
        results.append(ours)
        label = f"{context // 1024:>4}K"
        print(
            f"{label} engine: prompt {ours['prompt_tokens']} tok, "
            f"cold {ours['first_request']['ttft_ms']:.0f} ms; per key: prefilled median "
            f"{ours['prefilled_per_key_median']:.0f} max {ours['prefilled_per_key_max']}, "
            f"TTFT median {ours['ttft_median_ms']:.1f} p95 {ours['ttft_p95_ms']:.1f} ms "
            f"(restore {ours['restore_median_ms']:.2f} ms; a bare decode of as many tokens "
            f"{ours['decode_floor_ms']:.1f} ms); RSS {ours['peak_rss_mb']:.0f} MB; "
            f"{ours['checkpoints']} checkpoints, {ours['checkpoint_bytes'] / 2**20:.1f} MiB",
            flush=True,
        )
        if not args.no_stock:
            stock = run_child(args, "stock", context, keystrokes=args.stock_keystrokes)
            results.append(stock)
            speedup = stock["ttft_median_ms"] / ours["ttft_median_ms"]
            print(
                f"{label} stock : TTFT median {stock['ttft_median_ms']:.0f} "
                f"p95 {stock['ttft_p95_ms']:.0f} ms ({stock['keystrokes']} keys), "
                f"RSS {stock['peak_rss_mb']:.0f} MB; engine is {speedup:.0f}x faster",
                flush=True,
            )
    engine_rows = [r for r in results if r["kind"] == "engine"]
    base = engine_rows[0]
    for row in engine_rows[1:]:
        ratio = row["ttft_median_ms"] / base["ttft_median_ms"]
        print(f"TTFT({row['context'] // 1024}K)/TTFT({base['context'] // 1024}K) = {ratio:.2f}")
    if args.restart:
        results.append(measure_restart(args, contexts[-1]))
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    out = args.cache_dir / "keystroke.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
