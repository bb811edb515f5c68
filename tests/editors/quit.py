"""Real editors quitting while the server prefills: shared by the editor tests (tiny model) and
bench/shutdown.py (the numbers in docs/benchmarks.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.editors.tools import (
    EDITORS_DIR,
    process_gone,
    quitting_project,
    run_editor,
    server_command,
)
from tests.lsp.helpers import REPO_ROOT, server_env

# What a server still alive this long after its editor quit is doing is not quitting.
SERVER_GONE_WITHIN_S = 10.0


def neovim_quit(
    nvim: str, tmp: Path, model: Path, *, functions: int, delay_ms: int, settings: dict[str, Any]
) -> dict[str, Any]:
    """`:qall!` in Neovim `delay_ms` after a completion request: seconds from the quit to
    Neovim's exit (`quit_seconds`), and whether the server ended (`server_gone`)."""
    path, line = quitting_project(tmp / "project", functions)
    out = tmp / "quit.json"
    state = tmp / "xdg"
    env = server_env(
        QCN_TEST_OUT=str(out),
        QCN_TEST_FILE=str(path),
        QCN_TEST_LINE=str(line),
        QCN_TEST_DELAY_MS=str(delay_ms),
        QCN_LSP_CMD=json.dumps([*server_command(), "--log-level", "WARNING"]),
        QCN_MODEL=str(model),
        QCN_SETTINGS=json.dumps({**settings, "cache": {"dir": str(tmp / "cache")}}),
        XDG_STATE_HOME=str(state / "state"),
        XDG_DATA_HOME=str(state / "data"),
        XDG_CACHE_HOME=str(state / "cache"),
    )
    command = [
        nvim,
        "--headless",
        "-u",
        "editors/neovim/init.lua",
        "-c",
        f"luafile {EDITORS_DIR / 'nvim' / 'quit.lua'}",
    ]
    report, _, _ = run_editor(command, env, out, 240)
    report["quit_seconds"] = time.time() - report["quit_at"]
    report["server_gone"] = process_gone(report["server_pid"], SERVER_GONE_WITHIN_S)
    return report


def eglot_quit(
    emacs: str, tmp: Path, model: Path, *, functions: int, delay_ms: int, settings: dict[str, Any]
) -> dict[str, Any]:
    """`eglot-shutdown` `delay_ms` after a completion request: its seconds
    (`shutdown_seconds`), what the completion got, and whether the server ended."""
    path, line = quitting_project(tmp / "project", functions)
    out = tmp / "quit.json"
    home = tmp / "home"
    home.mkdir()
    drivers = EDITORS_DIR / "emacs"
    command = [
        emacs,
        "--batch",
        "-L",
        str(REPO_ROOT / "editors" / "emacs"),
        "-L",
        str(drivers),
        "-l",
        str(drivers / "quit.el"),
    ]
    env = server_env(
        HOME=str(home),
        QCN_TEST_OUT=str(out),
        QCN_TEST_FILE=str(path),
        QCN_TEST_LINE=str(line),
        QCN_TEST_DELAY_MS=str(delay_ms),
        QCN_TEST_PROGRAM=server_command()[0],
        QCN_TEST_MODEL=str(model),
        QCN_TEST_SETTINGS=json.dumps({**settings, "cache": {"dir": str(tmp / "cache")}}),
    )
    report, _, _ = run_editor(command, env, out, 240)
    report["server_gone"] = process_gone(report["server_pid"], SERVER_GONE_WITHIN_S)
    return report
