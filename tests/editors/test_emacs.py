"""Batch Emacs 28 (Debian's emacs-nox) with elpa-eglot 1.9 and editors/emacs/qcn-lsp.el as the
real LSP client of this checkout's `.venv/bin/qcn-lsp` (the tiny random-weight model).

Elisp drivers in tests/editors/emacs/ act as the user and write JSON reports.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from qcn_lsp.edits import EditSupport, OpenDocument
from tests.editors.quit import eglot_quit
from tests.editors.tools import (
    EDITORS_DIR,
    SOURCE,
    SOURCE_EDITED,
    USE_EDITED,
    editor,
    make_project,
    run_editor,
    sample_edit,
    server_command,
)
from tests.lsp.helpers import REPO_ROOT, server_env

DRIVERS = EDITORS_DIR / "emacs"
# (1-based line, column) where completion-at-point is asked; the first one cold.
SPOTS = [[3, 14], [2, 14], [1, 15], [3, 4]]
FAST = {"completion": {"maxTokens": 24}, "edits": {"maxTokens": 32}}
QUIT_SETTINGS = {"completion": {"maxTokens": 8}, "model": {"contextLength": 8192}}
EGLOT_SUPPORT = EditSupport.of(
    types.ClientCapabilities(
        workspace=types.WorkspaceClientCapabilities(
            workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True)
        )
    )
)
# How eglot shows a window/showMessage.
SERVER_REPORTS = re.compile(r"^\[eglot\] Server reports \(type=\d+\): ")


@functools.cache
def eglot_available(emacs: str) -> bool:
    probe = subprocess.run(
        [emacs, "--batch", "--eval", "(require 'eglot)"], capture_output=True, timeout=60
    )
    return probe.returncode == 0


@pytest.fixture(scope="module")
def emacs() -> str:
    program = editor("emacs")
    if not eglot_available(program):
        editor("eglot (elpa-eglot) for emacs")  # skips or fails like a missing editor
    return program


def run_driver(
    emacs: str, driver: str, home: Path, out: Path, timeout: float, **env: str
) -> dict[str, Any]:
    home.mkdir(parents=True, exist_ok=True)
    command = [
        emacs,
        "--batch",  # Debian's site-start still loads, and with it elpa-eglot
        "-L",
        str(REPO_ROOT / "editors" / "emacs"),
        "-L",
        str(DRIVERS),
        "-l",
        str(DRIVERS / driver),
    ]
    report, seconds, _ = run_editor(
        command, server_env(HOME=str(home), QCN_TEST_OUT=str(out), **env), out, timeout
    )
    print(f"emacs {driver}: {seconds:.1f} s")
    return report


def test_eglot_applies_the_servers_edit_shape(emacs: str, tmp_path: Path) -> None:
    """A versioned WorkspaceEdit as the server builds it for eglot (documentChanges), applied
    by eglot's own workspace/applyEdit code: UTF-16 columns, one open and one closed file."""
    project = make_project(tmp_path / "project")
    calc, use = project / "calc.py", project / "use.py"

    def open_document(path: Path) -> OpenDocument | None:
        # eglot numbers a buffer's versions from 0 when it opens it.
        return OpenDocument(SOURCE, 0) if path == calc.resolve() else None

    report = run_driver(
        emacs,
        "apply_edit.el",
        tmp_path / "home",
        tmp_path / "report.json",
        60,
        QCN_TEST_EDIT=sample_edit(project, EGLOT_SUPPORT, open_document),
        QCN_TEST_FILES=json.dumps([str(calc), str(use)]),
    )
    assert report["files"][str(calc)] == SOURCE_EDITED
    assert report["files"][str(use)] == USE_EDITED


@pytest.fixture(scope="module")
def session(
    emacs: str, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One eglot session with the real server, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("emacs")
    project = make_project(tmp / "project")
    report = run_driver(
        emacs,
        "session.el",
        tmp / "home",
        tmp / "session.json",
        300,
        QCN_TEST_FILE=str(project / "calc.py"),
        QCN_TEST_PROGRAM=server_command()[0],
        QCN_TEST_MODEL=str(tiny_model),
        QCN_TEST_SETTINGS=json.dumps(FAST),
        QCN_TEST_SPOTS=json.dumps(SPOTS),
    )
    cold, automatic = report["cold_completion"], report["cold_automatic"]
    warm = [round(c["seconds"], 2) for c in report["completions"]]
    print(
        f"emacs: connect {report['connect_seconds']:.1f} s; first automatic completion "
        f"({automatic['engine_state']}) {automatic['seconds']:.2f} s, {automatic['items']} "
        f"items; first invoked completion "
        f"{cold['seconds']:.2f} s -> {cold['candidates']!r:.80}; model ready "
        f"{report['ready_after_seconds']:.1f} s later; warm completions {warm} s; shutdown "
        f"{report['shutdown_seconds']:.2f} s (error: {report.get('shutdown_error')}, server "
        f"alive after: {report['server_alive_after_shutdown']}); -32800 replies in the "
        f"events log: {report['cancelled_replies']}; two completions in flight got "
        f"{report['superseded']}"
    )
    return report


def test_eglot_completion_candidates_from_the_server(session: dict[str, Any]) -> None:
    assert session["server_class"] == "qcn-lsp-server"
    answers = [c["candidates"] for c in session["completions"]]
    # eglot gives up on a request after 10 s: on a loaded machine even the tiny model can
    # take that long, and that is the only failure allowed.
    failures = [a for a in answers if isinstance(a, str)]
    assert all("Timed out" in a for a in failures), failures
    assert any(a and not isinstance(a, str) for a in answers), f"no candidate: {answers}"


def test_eglot_lists_code_actions(session: dict[str, Any]) -> None:
    assert session["resolve_provider"]
    assert session["listed"] == ["Qwen: rewrite selection"]
    assert session["listed_fixes"][0] == "Qwen: fix “expected expression”"


def from_server(messages: list[str]) -> list[str]:
    """qcn-lsp's messages: the plugin's own and the server's window/showMessage."""
    texts = [SERVER_REPORTS.sub("", m) for m in messages]
    return [m for m in texts if m.startswith("qcn-lsp")]


def said_why(messages: list[str]) -> bool:
    """A qcn-lsp message that names what happened (not only that the model was asked), once."""
    reasons = [
        m
        for m in from_server(messages)
        if "asking the model" not in m and m.split(":", 1)[-1].strip()
    ]
    return len(reasons) == 1


def test_qcn_code_actions_resolve_and_apply_or_say_why(session: dict[str, Any]) -> None:
    """qcn-lsp-code-actions runs the chosen action: its edit lands, or the reason shows once."""
    action = session["qcn_action"]
    assert action["changed"] or said_why(action["messages"]), action


def test_eglot_own_code_action_flow_applies_or_says_why(session: dict[str, Any]) -> None:
    """eglot 1.9 cannot resolve: the listed action's command runs the model, and the edit
    comes through workspace/applyEdit (eglot asks), or the reason shows once."""
    assert all(session["listed_have_edit_or_command"]), session["listed_have_edit_or_command"]
    action = session["eglot_action"]
    assert action["changed"] or said_why(action["messages"]), action


def test_superseded_completions_are_answered_empty(session: dict[str, Any]) -> None:
    """Two completions in flight for one document: the older one gets an empty answer, not
    the -32800 error eglot would show (the client never cancelled it)."""
    assert all("items" in reply for reply in session["superseded"]), session["superseded"]
    assert session["cancelled_replies"] == 0


@pytest.mark.parametrize("command", ["rewrite", "refactor", "edit_files"])
def test_edit_commands_land_through_apply_edit_or_say_why(
    session: dict[str, Any], command: str
) -> None:
    """The server's edit arrives as workspace/applyEdit (eglot asks, the buffer changes), or
    the user reads why none came, once (random weights: usually "the model proposed no
    change"): the command's result carries the reason and the server shows no message of it."""
    outcome = session[command]
    assert outcome["answered"], outcome
    if outcome["changed"]:
        assert outcome["applied"] and session["confirmations"], outcome
    else:
        assert said_why(outcome["messages"]), outcome


def test_status_command(session: dict[str, Any]) -> None:
    assert any(m.startswith("qcn-lsp: engine ready") for m in session["status_messages"])


def test_missing_server_says_what_to_install(emacs: str, tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    report = run_driver(
        emacs,
        "missing_server.el",
        tmp_path / "home",
        tmp_path / "missing.json",
        60,
        QCN_TEST_FILE=str(project / "calc.py"),
        QCN_TEST_PROGRAM=str(tmp_path / "nowhere" / "qcn-lsp"),
    )
    message = report["user_error"]
    assert "nowhere/qcn-lsp" in message and "not on PATH or not executable" in message
    assert "pipx install" in message and "qcn-lsp-program" in message
    assert "not managing this buffer" in report["status_error"]
    assert not report["managed"]


def test_eglot_shutdown_while_the_server_prefills(
    emacs: str, tmp_path: Path, tiny_model: Path
) -> None:
    """eglot-shutdown with a completion in flight: the reply comes within eglot's 1.5 s, the
    completion is answered (its result, or "server shutting down"), the server ends."""
    report = eglot_quit(
        emacs, tmp_path, tiny_model, functions=400, delay_ms=50, settings=QUIT_SETTINGS
    )
    assert "shutdown_error" not in report, report
    assert report["completion"] in ("result", "qcn-lsp: server shutting down"), report
    assert report["server_gone"] and not report["server_alive_after_shutdown"], report
    print(f"eglot-shutdown with a prefill in flight: {report['shutdown_seconds']:.2f} s")
