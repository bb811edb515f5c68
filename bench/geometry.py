"""The engine's memory at Qwen3-Coder-Next's real state size (the `geometry` test model).

    PYTHONPATH=. python bench/geometry.py [--keystrokes 1000] [--context 4k]

The `geometry` model has the real layer pattern and state geometry (75.4 MiB of recurrent state
per checkpoint, 24 KiB of attention KV per token) and Qwen's real vocabulary, on a hidden size
of 64. With the server's defaults (`engine.checkpointMemoryMB` 1024, `engine.checkpointInterval`
256) this measures, each in a fresh process:

- trace: a typing trace in the middle of a real file (Lib/cmd.py, repository context from the
  standard library): checkpoints held and evicted (in order, with their tier), restore and
  snapshot time per keystroke, RSS after every keystroke; then the shutdown (time, bytes
  persisted);
- restart: a new process's first completion at the same cursor (state from disk);
- disk: sessions on different files under a `cache.stateDiskMB` cap: how big the state
  directory gets.
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
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.keystroke import repo_context  # noqa: E402
from bench.models import CACHE, bench_model  # noqa: E402
from engine.config import EngineConfig  # noqa: E402
from engine.formats import fim_prompt  # noqa: E402
from engine.local import LocalEngine  # noqa: E402
from engine.params import GenerationParams  # noqa: E402
from engine.segments import Prompt  # noqa: E402

STDLIB = Path(os.__file__).parent
CURRENT_FILE = STDLIB / "cmd.py"
TYPED_FROM = STDLIB / "textwrap.py"  # what the trace types: real code, line by line
MIB = 1 << 20
FINAL_WORD = " value"  # typed before the last request (the restart resumes there)


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def typing_trace(n_keys: int) -> list[str]:
    """Real code typed character by character, a typo corrected every 37 characters."""
    source = TYPED_FROM.read_text()
    text = source[len(source) // 3 :]
    keys: list[str] = []
    for i, ch in enumerate(text):
        if len(keys) >= n_keys:
            break
        if i % 37 == 36:
            keys += ["#", "\b"]
        keys.append(ch)
    return keys[:n_keys]


class Editor:
    """The text of the current file and the prompt the server would build for its cursor."""

    def __init__(self, files: list[tuple[str, str]], path: Path, cursor_at: float, args: Any):
        self.files, self.args = files, args
        self.name = f"Lib/{path.name}"
        self.text = path.read_text()
        lines = self.text.splitlines(keepends=True)
        self.cursor = sum(len(line) for line in lines[: int(len(lines) * cursor_at)])

    def key(self, ch: str) -> None:
        if ch == "\b":
            self.text = self.text[: self.cursor - 1] + self.text[self.cursor :]
            self.cursor -= 1
        else:
            self.text = self.text[: self.cursor] + ch + self.text[self.cursor :]
            self.cursor += 1

    def prompt(self) -> Prompt:
        return fim_prompt(
            "cpython",
            self.files,
            self.name,
            self.text[: self.cursor],
            self.text[self.cursor :],
            suffix_chars=self.args.suffix_chars,
        )


def engine_config(args: Any, state_dir: str, **overrides: Any) -> EngineConfig:
    values: dict[str, Any] = {
        "model_path": args.model,
        "n_ctx": args.context + 4096,
        "n_threads": args.threads,
        "state_dir": state_dir,
        "checkpoint_memory_mb": args.checkpoint_mb,
    }
    values.update(overrides)
    return EngineConfig(**values)


def _instrument(engine: LocalEngine, log: dict[str, Any]) -> None:
    """Record snapshot times and the checkpoints evicted (in order, with tier): every eviction
    goes through `make_room`, before a snapshot is copied out and inside `add`."""
    runner = engine._runner("interactive")
    cache, session = runner.state.cache, runner.state.session
    assert session is not None
    tiers = {0: "cursor", 1: "grid", 2: "stable"}
    snapshot = session.snapshot

    make_room = cache.make_room

    def make_room_logged(nbytes: int) -> bool:
        before = {id(c): c for c in cache._all()}
        evictions = cache.evictions
        made = make_room(nbytes)
        if cache.evictions > evictions:
            after = {id(c) for c in cache._all()}
            for c in before.values():
                if id(c) not in after:
                    log["evicted"].append([log["key"], c.pos, c.kind, tiers[c.priority]])
        return made

    def snapshot_timed(*, partial: bool) -> bytearray:
        started = time.perf_counter()
        data = snapshot(partial=partial)
        log["snapshot_ms"].append([partial, (time.perf_counter() - started) * 1000, len(data)])
        return data

    cache.make_room = make_room_logged  # type: ignore[method-assign]
    session.snapshot = snapshot_timed  # type: ignore[method-assign]


def _state_dir_bytes(state_dir: str) -> int:
    return sum(p.stat().st_size for p in Path(state_dir).rglob("*") if p.is_file())


async def run_trace(args: Any) -> dict[str, Any]:
    engine = LocalEngine(engine_config(args, args.state_dir))
    await engine.start()
    files = repo_context(engine.count_tokens, args.context, (CURRENT_FILE, TYPED_FROM))
    editor = Editor(files, CURRENT_FILE, args.cursor_at, args)
    params = GenerationParams(max_tokens=args.max_tokens)
    log: dict[str, Any] = {"key": 0, "evicted": [], "snapshot_ms": []}
    _instrument(engine, log)
    runner = engine._runner("interactive")
    rows = []
    rss_start = rss_bytes()
    for key, ch in enumerate(["", *typing_trace(args.keystrokes)]):
        log["key"] = key
        if ch:
            editor.key(ch)
        gen = engine.stream(editor.prompt(), params, key="bench")
        await gen.text()
        report = gen.report
        assert report is not None
        stats = engine.stats()["interactive"]
        resume = runner.resume_point
        rows.append(
            {
                "prompt": report.prompt_tokens,
                "prefilled": report.prefilled_tokens,
                "restore": report.restore_kind,
                "restore_ms": report.ms["restore"],
                "ttft_ms": report.ms.get("first_token", report.ms["total"]),
                "checkpoints": stats["checkpoints"],
                "checkpoint_bytes": stats["bytes"],
                "rss": rss_bytes(),
                # what shutdown could persist now (it needs a checkpoint at the cursor)
                "cursor_checkpoint": resume is not None and runner.state.cache.has_partial(resume),
            }
        )
        if key % 100 == 0:
            print(
                f"key {key}: {stats['checkpoints']} checkpoints {stats['bytes'] / MIB:.0f} MiB, "
                f"RSS {rows[-1]['rss'] / MIB:.0f} MiB, restore {report.restore_kind} "
                f"{report.ms['restore']:.1f} ms, prefilled {report.prefilled_tokens}",
                file=sys.stderr,
                flush=True,
            )
    final_stats = engine.stats()
    # An editor debounces: the last request often comes after a few characters typed at once.
    for ch in FINAL_WORD:
        editor.key(ch)
    await engine.stream(editor.prompt(), params, key="bench").text()
    resume = runner.resume_point
    resume_checkpoint = resume is not None and runner.state.cache.has_partial(resume)
    engine.flush_persisted()
    disk_before = _state_dir_bytes(args.state_dir)
    started = time.perf_counter()
    await engine.close()
    close_ms = (time.perf_counter() - started) * 1000
    keys = rows[1:]
    partial_snapshots = [ms for partial, ms, _ in log["snapshot_ms"] if partial]
    rss = [r["rss"] for r in rows]
    warm = rss[len(rss) // 10 :]
    return {
        "kind": "trace",
        "model_rss_start": rss_start,
        "cold_ms": rows[0]["ttft_ms"],
        "prompt_tokens": rows[0]["prompt"],
        "keystrokes": len(keys),
        "prefilled_median": statistics.median(r["prefilled"] for r in keys),
        "ttft_median_ms": statistics.median(r["ttft_ms"] for r in keys),
        "restore_median_ms": statistics.median(r["restore_ms"] for r in keys),
        "restore_p95_ms": sorted(r["restore_ms"] for r in keys)[int(0.95 * (len(keys) - 1))],
        "restores": sorted({r["restore"] for r in keys}),
        "snapshot_median_ms": statistics.median(partial_snapshots) if partial_snapshots else None,
        "snapshots": len(partial_snapshots),
        "checkpoints_max": max(r["checkpoints"] for r in rows),
        "checkpoint_bytes_max": max(r["checkpoint_bytes"] for r in rows),
        "stats": final_stats,
        "rss_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_min": min(rss),
        "rss_max": max(rss),
        "rss_warm_first": warm[0],
        "rss_warm_last": warm[-1],
        "rss_warm_max": max(warm),
        "rss_every_100": rss[::100],
        "evicted": log["evicted"],
        "keys_without_cursor_checkpoint": sum(not r["cursor_checkpoint"] for r in keys),
        "resume_point": resume,
        "resume_checkpoint": resume_checkpoint,
        "shutdown_ms": close_ms,
        "shutdown_bytes_written": _state_dir_bytes(args.state_dir) - disk_before,
        "full_snapshots": [[ms, n] for partial, ms, n in log["snapshot_ms"] if not partial],
    }


async def run_restart(args: Any) -> dict[str, Any]:
    started = time.perf_counter()
    engine = LocalEngine(engine_config(args, args.state_dir))
    await engine.start()
    load_ms = (time.perf_counter() - started) * 1000
    files = repo_context(engine.count_tokens, args.context, (CURRENT_FILE, TYPED_FROM))
    editor = Editor(files, CURRENT_FILE, args.cursor_at, args)
    for ch in [*typing_trace(args.keystrokes), *FINAL_WORD]:
        editor.key(ch)  # the file as the trace left it
    gen = engine.stream(editor.prompt(), GenerationParams(max_tokens=args.max_tokens))
    await gen.text()
    report = gen.report
    assert report is not None
    rss = rss_bytes()
    await engine.close()
    return {
        "kind": "restart",
        "load_ms": load_ms,
        "restore": report.restore_kind,
        "restored_from": report.restored_from,
        "prompt_tokens": report.prompt_tokens,
        "prefilled": report.prefilled_tokens,
        "restore_ms": report.ms["restore"],
        "ttft_ms": report.ms.get("first_token", report.ms["total"]),
        "rss": rss,
    }


async def run_disk(args: Any) -> dict[str, Any]:
    """Sessions on different files: each shutdown persists its cursor state."""
    sizes = []
    others = [p for p in sorted(STDLIB.glob("*.py")) if 20_000 < p.stat().st_size < 60_000]
    for path in others[: args.sessions]:
        config = engine_config(
            args,
            args.state_dir,
            state_cache_bytes=args.disk_mb * MIB,
            persist_min_tokens=min(1024, args.context),
        )
        engine = LocalEngine(config)
        await engine.start()
        files = repo_context(engine.count_tokens, args.context, (path, CURRENT_FILE, TYPED_FROM))
        editor = Editor(files, path, args.cursor_at, args)
        await engine.stream(editor.prompt(), GenerationParams(max_tokens=1)).text()
        engine.flush_persisted()
        await engine.close()
        sizes.append(_state_dir_bytes(args.state_dir))
        print(
            f"session {len(sizes)} ({path.name}): state dir {sizes[-1] / MIB:.0f} MiB",
            file=sys.stderr,
            flush=True,
        )
    return {"kind": "disk", "cap_bytes": args.disk_mb * MIB, "state_dir_bytes": sizes}


CHILDREN = {"trace": run_trace, "restart": run_restart, "disk": run_disk}


def child(args: argparse.Namespace, kind: str, state_dir: str) -> dict[str, Any]:
    options = {
        "--child": kind,
        "--model": args.model,
        "--threads": args.threads,
        "--context": args.context,
        "--keystrokes": args.keystrokes,
        "--max-tokens": args.max_tokens,
        "--suffix-chars": args.suffix_chars,
        "--state-dir": state_dir,
        "--sessions": args.sessions,
        "--disk-mb": args.disk_mb,
        "--cursor-at": args.cursor_at,
        "--checkpoint-mb": args.checkpoint_mb,
    }
    cmd = [sys.executable, __file__, *(str(x) for pair in options.items() for x in pair)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=env)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def parse_size(text: str) -> int:
    text = text.strip().lower()
    return int(float(text[:-1]) * 1024) if text.endswith("k") else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF (default: geometry preset, Qwen vocab)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--context", type=parse_size, default=4096)
    parser.add_argument("--keystrokes", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=1)
    # short: the trace is about memory, and each suffix token costs ~20 ms on this model
    parser.add_argument("--suffix-chars", type=int, default=40)
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--disk-mb", type=int, default=2048)
    parser.add_argument("--cursor-at", type=float, default=0.5, help="fraction of the file")
    parser.add_argument("--checkpoint-mb", type=float, default=1024, help="checkpointMemoryMB")
    parser.add_argument("--only", choices=[*CHILDREN], action="append")
    parser.add_argument("--state-dir", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=[*CHILDREN], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(CHILDREN[args.child](args))))
        return
    args.model = args.model or bench_model("geometry")
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    print(
        f"model {args.model}; {platform.processor() or platform.machine()}, {args.threads} "
        f"threads; load average {' '.join(load)}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        flush=True,
    )
    results: list[dict[str, Any]] = []
    kinds = args.only or [*CHILDREN]
    CACHE.mkdir(parents=True, exist_ok=True)
    out = CACHE / "geometry.json"

    def run(kind: str, state_dir: str) -> None:
        """One part in a fresh process; its summary printed and all results saved at once."""
        result = child(args, kind, state_dir)
        results.append(result)
        out.write_text(json.dumps(results, indent=1))
        summary = {k: v for k, v in result.items() if k not in ("evicted", "rss_every_100")}
        print(json.dumps(summary), flush=True)

    with tempfile.TemporaryDirectory(dir=CACHE) as state_dir:
        if "trace" in kinds:
            run("trace", state_dir)
        if "restart" in kinds:
            run("restart", state_dir)
    if "disk" in kinds:
        with tempfile.TemporaryDirectory(dir=CACHE) as state_dir:
            run("disk", state_dir)
    print(f"results: {out}")


if __name__ == "__main__":
    main()
