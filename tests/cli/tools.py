"""Run `qcn-lsp` and the demo as a user does: a subprocess, with what it printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.lsp.helpers import REPO_ROOT, server_env


def run_cli(
    *args: str,
    cwd: Path | None = None,
    stdin: str | None = None,
    timeout: float = 120,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qcn_lsp", *args],
        capture_output=True,
        text=True,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        cwd=cwd,
        env=server_env(**env),
        timeout=timeout,
    )


def run_demo(timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "demo.py")],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=REPO_ROOT,
        env=server_env(**env),
        timeout=timeout,
    )


def one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The error `result` printed: one line, no traceback, a non-zero exit; it holds `words`."""
    assert result.returncode != 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]
