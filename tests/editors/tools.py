"""Real editors as LSP clients: finding them, running them headless, reading their reports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from lsprotocol.converters import get_converter
from pygls.workspace import PositionCodec

from qcn_lsp.edits import (
    EditSupport,
    FileEdit,
    OpenDocument,
    WorkspaceFiles,
    plan_changes,
    to_workspace_edit,
)
from tests.lsp.helpers import REPO_ROOT

EDITORS_DIR = Path(__file__).resolve().parent
SETUP_SCRIPT = "editors/scripts/setup-test-editors.sh"
# CI sets this: a missing editor then fails the test instead of skipping it.
REQUIRE_ENV = "QCN_REQUIRE_EDITORS"
# The server command the editors run: this checkout's entry point, as after `make`.
SERVER = REPO_ROOT / ".venv" / "bin" / "qcn-lsp"
# The small project the editor tests open: an emoji before edited text tests UTF-16 columns.
SOURCE = 'label = "😀 sum"\ndef add(a, b):\n    return a +\n'
USE = "from calc import add\nprint(add(1, 2))\n"
SOURCE_EDITED = 'label = "😀 total"\ndef add(a, b):\n    return a + b\n'
USE_EDITED = "from calc import add\nprint(add(2, 3))\n"


def editor(program: str) -> str:
    """The editor's path; skips (or fails, under QCN_REQUIRE_EDITORS=1) when it is absent."""
    found = shutil.which(program)
    if found is None:
        message = f"{program} is not installed (run {SETUP_SCRIPT})"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{message}; {REQUIRE_ENV}=1 requires it")
        pytest.skip(message)
    return found


def server_command() -> list[str]:
    if not os.access(SERVER, os.X_OK):
        pytest.fail(f"{SERVER} is missing: run `make .venv/.installed` first")
    return [str(SERVER)]


def run_editor(
    command: list[str], env: dict[str, str], out: Path, timeout: float
) -> tuple[dict[str, Any], float, str]:
    """Run an editor that writes a JSON report to `out`: (report, seconds, its output)."""
    started = time.perf_counter()
    completed = subprocess.run(
        command,
        env=env,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )
    seconds = time.perf_counter() - started
    output = (completed.stdout + completed.stderr).decode(errors="replace")
    assert out.exists(), (
        f"{command[0]} wrote no report (exit {completed.returncode}):\n{output[-3000:]}"
    )
    report = json.loads(out.read_text())
    assert "error" not in report, f"{report['error']}\n{output[-3000:]}"
    return report, seconds, output


def make_project(root: Path) -> Path:
    """calc.py (SOURCE) and use.py (USE) under a `.git` root, the marker editors look for."""
    root.mkdir()
    (root / ".git").mkdir()
    (root / "calc.py").write_text(SOURCE)
    (root / "use.py").write_text(USE)
    return root


def sample_edit(
    project: Path,
    support: EditSupport,
    open_document: Callable[[Path], OpenDocument | None] = lambda path: None,
) -> str:
    """JSON of the WorkspaceEdit the server builds for a client with `support` from edits
    turning SOURCE into SOURCE_EDITED (calc.py) and USE into USE_EDITED (use.py)."""
    files = WorkspaceFiles([project], open_document)
    for shown in ("calc.py", "use.py"):
        files.read(shown)
    plan = plan_changes(
        files,
        [
            FileEdit("calc.py", "return a +", "return a + b"),
            FileEdit("calc.py", "😀 sum", "😀 total"),
            FileEdit("use.py", "add(1, 2)", "add(2, 3)"),
        ],
    )
    edit = to_workspace_edit(
        files,
        plan,
        support=support,
        label="test",
        codec=PositionCodec(types.PositionEncodingKind.Utf16),
    )
    return json.dumps(get_converter().unstructure(edit))


def quitting_project(root: Path, functions: int) -> tuple[Path, int]:
    """A project whose one file takes a while to prefill; (the file, a line to complete at)."""
    root.mkdir()
    (root / ".git").mkdir()
    path = root / "steps.py"
    path.write_text(
        "".join(f"def step_{n}(value):\n    return value * {n} + 1\n\n\n" for n in range(functions))
    )
    return path, 4 * functions - 1


def process_gone(pid: int, within_s: float) -> bool:
    """Whether process `pid` has ended (or is a zombie) within `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat", "rb") as stat:
                if stat.read().rpartition(b")")[2].split()[0] == b"Z":
                    return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.05)
    return False
