"""Work behind ``qcn-lsp index PATH`` and ``qcn-lsp context FILE:LINE:COL --budget N``."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from context.assemble import ContextAssembler, RepoContext
from context.cost import ContextCost
from context.index import IndexStats, RepoIndex


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qcn-lsp" / "tags"


def _progress_bar(stream: TextIO) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    state = {"last": 0.0}

    def update(done: int, total: int) -> None:
        now = time.monotonic()
        if done != total and now - state["last"] < 0.1:
            return
        state["last"] = now
        width = 30
        filled = width * done // max(total, 1)
        stream.write(f"\rindexing [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        stream.flush()

    def finish() -> None:
        stream.write("\n")
        stream.flush()

    return update, finish


def _print_stats(stats: IndexStats, out: TextIO) -> None:
    out.write(
        f"files: {stats.files}  parsed: {stats.parsed}  from cache: {stats.cached}  "
        f"plain text: {stats.plain}\n"
        f"definitions: {stats.definitions}  references: {stats.references}  "
        f"time: {stats.seconds:.2f} s\n"
    )


def _build(root: Path, err: TextIO) -> tuple[RepoIndex, IndexStats]:
    index = RepoIndex([root], cache_dir=default_cache_dir())
    update, finish = _progress_bar(err)
    stats = index.build(progress=update)
    finish()
    return index, stats


def run_index(path: str, out: TextIO = sys.stdout) -> int:
    """Index a workspace folder, showing progress on stderr and statistics on ``out``."""
    root = Path(path)
    if not root.is_dir():
        sys.stderr.write(f"qcn-lsp index: not a folder: {path}\n")
        return 2
    index, stats = _build(root, sys.stderr)
    try:
        _print_stats(stats, out)
    finally:
        index.close()
    return 0


def parse_spec(spec: str) -> tuple[Path, int, int]:
    """``FILE:LINE:COL`` with 1-based line and column, as editors and compilers print them."""
    parts = spec.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        raise ValueError(f"expected FILE:LINE:COL, got {spec!r}")
    return Path(parts[0]), max(int(parts[1]) - 1, 0), max(int(parts[2]) - 1, 0)


def _workspace_root(file: Path) -> Path:
    """The nearest folder above ``file`` that looks like a project root."""
    markers = (".git", "pyproject.toml", "setup.py", "package.json", "go.mod", "Cargo.toml")
    for folder in file.resolve().parents:
        if any((folder / marker).exists() for marker in markers):
            return folder
    return file.resolve().parent


def run_context(
    spec: str,
    budget: int,
    *,
    render: Callable[[RepoContext], str],
    cost: ContextCost,
    out: TextIO = sys.stdout,
) -> int:
    """Print the repo context assembled for a cursor as ``render`` lays it out in a prompt
    (``cost`` counting that layout), then its statistics on stderr."""
    try:
        file, line, col = parse_spec(spec)
        text = file.read_text(encoding="utf-8", errors="replace")
    except (ValueError, OSError) as error:
        sys.stderr.write(f"qcn-lsp context: {error}\n")
        return 2
    index, stats = _build(_workspace_root(file), sys.stderr)
    try:
        assembler = ContextAssembler(index, cost)
        started = time.perf_counter()
        context = assembler.assemble(str(file.resolve()), text, line, col, budget)
        elapsed_ms = (time.perf_counter() - started) * 1000
        out.write(render(context))
        sys.stderr.write(
            f"{len(context.files)} files, {context.tokens} tokens "
            f"(budget {budget}), assembled in {elapsed_ms:.1f} ms\n"
        )
        _print_stats(stats, sys.stderr)
    finally:
        index.close()
    return 0
