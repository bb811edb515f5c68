"""Work behind ``qcn-lsp index PATH`` and ``qcn-lsp context FILE:LINE:COL --budget N``."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from context.assemble import ContextAssembler, RepoContext
from context.cost import ContextCost
from context.index import IndexStats, RepoIndex
from context.roots import PROJECT_MARKERS, find_project_root


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qcn-lsp" / "tags"


def _progress_bar(stream: TextIO) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A bar redrawn in place on a terminal; nothing when the stream is a file or a pipe."""
    if not stream.isatty():
        return (lambda done, total: None), (lambda: None)
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
        f"plain text (no grammar, no symbols): {stats.plain}\n"
        f"definitions: {stats.definitions}  references: {stats.references}  "
        f"time: {stats.seconds:.2f} s\n"
    )


def _build(root: Path, err: TextIO) -> tuple[RepoIndex, IndexStats]:
    index = RepoIndex([root], cache_dir=default_cache_dir())
    update, finish = _progress_bar(err)
    stats = index.build(progress=update)
    finish()
    return index, stats


def _fail(command: str, message: str) -> int:
    sys.stderr.write(f"qcn-lsp {command}: {message}\n")
    return 2


def run_index(path: str | Path, out: TextIO = sys.stdout) -> int:
    """Index a workspace folder, showing progress on stderr and statistics on ``out``."""
    root = Path(path)
    if not root.is_dir():
        what = "not a folder" if root.exists() else "no such folder"
        return _fail("index", f"{what}: {path}; give the workspace folder to index")
    index, stats = _build(root, sys.stderr)
    try:
        _print_stats(stats, out)
    finally:
        index.close()
    return 0


def parse_spec(spec: str) -> tuple[Path, int, int]:
    """``FILE:LINE:COL`` with 1-based line and column, as editors and compilers print them;
    returns the 0-based line and column."""
    parts = spec.rsplit(":", 2)
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not parts[2].isdigit():
        raise ValueError(f"expected FILE:LINE:COL, e.g. app.py:12:5, got {spec!r}")
    line, col = int(parts[1]), int(parts[2])
    if line < 1 or col < 1:
        raise ValueError(
            f"line and column are 1-based (the first character is 1:1), got {line}:{col}"
        )
    return Path(parts[0]), line - 1, col - 1


# The line breaks of LSP (and of the editors): \n, \r\n and \r, nothing else.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def read_source(file: Path) -> str:
    """The text of a source file; ValueError saying why it is not one."""
    if file.is_dir():
        raise ValueError(f"{file} is a folder: give a file")
    data = file.read_bytes()
    if b"\0" not in data:
        with contextlib.suppress(UnicodeDecodeError):
            return data.decode("utf-8")
    raise ValueError(f"{file} is not a text file (binary, or not UTF-8)")


def check_cursor(text: str, line: int, col: int) -> None:
    """ValueError when the 0-based ``line``/``col`` is not a cursor position in ``text``."""
    lines = _LINE_BREAK.split(text)
    if line >= len(lines):
        raise ValueError(f"line {line + 1} is past the end: the file's last line is {len(lines)}")
    length = len(lines[line])
    if col > length:
        raise ValueError(
            f"column {col + 1} is past the end of line {line + 1}, which has {length} "
            f"characters (column {length + 1} is its end)"
        )


def _workspace_root(file: Path, root: Path | None) -> Path:
    """The folder to index: ``root`` when given, else the project FILE is in."""
    if root is not None:
        if not root.is_dir():
            raise ValueError(f"--root {root} is not a folder")
        if not file.resolve().is_relative_to(root.resolve()):
            raise ValueError(f"{file} is not inside --root {root}")
        return root
    found = find_project_root(file)
    if found is None:
        raise ValueError(
            f"no project folder above {file} (one holding {', '.join(PROJECT_MARKERS)}); "
            "give the workspace with --root DIR"
        )
    return found


def run_context(
    spec: str,
    budget: int,
    *,
    root: Path | None = None,
    render: Callable[[RepoContext], str],
    cost: ContextCost,
    out: TextIO = sys.stdout,
) -> int:
    """Print the repo context assembled for a cursor as ``render`` lays it out in a prompt
    (``cost`` counting that layout), then its statistics on stderr."""
    try:
        file, line, col = parse_spec(spec)
        text = read_source(file)
        check_cursor(text, line, col)
        workspace = _workspace_root(file, root)
    except OSError as error:
        return _fail("context", f"cannot read {error.filename or spec}: {error.strerror}")
    except ValueError as error:
        return _fail("context", str(error))
    index, stats = _build(workspace, sys.stderr)
    try:
        assembler = ContextAssembler(index, cost)
        started = time.perf_counter()
        context = assembler.assemble(str(file.resolve()), text, line, col, budget)
        elapsed_ms = (time.perf_counter() - started) * 1000
        out.write(render(context))
        sys.stderr.write(
            f"workspace {workspace}: {len(context.files)} files, {context.tokens} tokens "
            f"(budget {budget}), assembled in {elapsed_ms:.1f} ms\n"
        )
        _print_stats(stats, sys.stderr)
    finally:
        index.close()
    return 0
