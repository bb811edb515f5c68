"""Headless Neovim (Debian's 0.7.2) with editors/neovim as the real, independent LSP client.

The plugin starts this checkout's `.venv/bin/qcn-lsp` (the tiny random-weight model where a
model is needed); Lua drivers in tests/editors/nvim/ act as the user and write JSON reports.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from qcn_lsp.edits import EditSupport, syntax_error_count
from tests.editors.quit import neovim_quit
from tests.editors.tools import (
    EDITORS_DIR,
    SERVER,
    SOURCE,
    SOURCE_EDITED,
    USE_EDITED,
    editor,
    make_project,
    run_editor,
    sample_edit,
    server_command,
)
from tests.lsp.helpers import server_env

DRIVERS = EDITORS_DIR / "nvim"
INIT = "editors/neovim/init.lua"
NVIM_LOG_WARN = 3  # vim.log.levels
NVIM_LOG_ERROR = 4
GHOST_SOURCE = """import math


def area(radius):
    return math.pi * radius


def describe(shape, size):
    label = f"{shape}: {size}"
    return label


class Counter:
    def __init__(self):
        self.count = 0

    def step(self):
        self.count
"""
# Spots to type at (1-based line, keys after `A`): a random-weight model answers nothing at
# some of them.
GHOST_SPOTS = [
    {"line": 18, "keys": " +"},
    {"line": 5, "keys": " *"},
    {"line": 10, "keys": " "},
    {"line": 15, "keys": " #"},
    {"line": 9, "keys": " +"},
    {"line": 4, "keys": " "},
]
# Short answers keep the random-weight model quick.
FAST = {"completion": {"maxTokens": 24}, "edits": {"maxTokens": 32}}
QUIT_SETTINGS = {"completion": {"maxTokens": 8}, "model": {"contextLength": 8192}}
NEOVIM_SUPPORT = EditSupport.of(
    types.ClientCapabilities(
        workspace=types.WorkspaceClientCapabilities(
            workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=False)
        )
    )
)


@pytest.fixture
def nvim() -> str:
    return editor("nvim")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_project(tmp_path / "project")
    (root / "shapes.py").write_text(GHOST_SOURCE)
    return root


def nvim_env(tmp_path: Path, out: Path, **extra: str) -> dict[str, str]:
    # Neovim's own state (lsp.log, shada) stays in the test's directory.
    state = tmp_path / "xdg"
    return server_env(
        QCN_TEST_OUT=str(out),
        XDG_STATE_HOME=str(state / "state"),
        XDG_DATA_HOME=str(state / "data"),
        XDG_CACHE_HOME=str(state / "cache"),
        **extra,
    )


def run_driver(
    nvim: str, driver: str, env: dict[str, str], out: Path, timeout: float, init: str = INIT
) -> dict[str, Any]:
    report, seconds, _ = run_editor(
        [nvim, "--headless", "-u", init, "-c", f"luafile {DRIVERS / driver}"], env, out, timeout
    )
    print(f"neovim {driver}: {seconds:.1f} s")
    return report


def explicit_server(model: Path | None) -> dict[str, str]:
    env = {"QCN_LSP_CMD": json.dumps([*server_command(), "--log-level", "WARNING"])}
    if model is not None:
        env.update(QCN_MODEL=str(model), QCN_SETTINGS=json.dumps(FAST))
    return env


def test_neovim_applies_the_servers_edit_shape(nvim: str, project: Path, tmp_path: Path) -> None:
    """Edits built for a client without documentChanges, applied by Neovim's own LSP code."""
    out = tmp_path / "report.json"
    paths = [str(project / "calc.py"), str(project / "use.py")]
    env = nvim_env(
        tmp_path,
        out,
        QCN_TEST_EDIT=sample_edit(project, NEOVIM_SUPPORT),
        QCN_TEST_FILES=json.dumps(paths),
    )
    report = run_driver(nvim, "apply_edit.lua", env, out, 60, init="NONE")
    assert report["files"][paths[0]] == SOURCE_EDITED.splitlines()
    assert report["files"][paths[1]] == USE_EDITED.splitlines()


def test_neovim_lists_and_resolves_code_actions_without_a_model(
    nvim: str, project: Path, tmp_path: Path
) -> None:
    """Neovim's own code-action flow (resolve, then apply whatever edit comes back) with no
    model configured: the user sees the server's reason and the buffer is untouched."""
    out = tmp_path / "session.json"
    env = nvim_env(tmp_path, out, QCN_TEST_FILE=str(project / "calc.py"), **explicit_server(None))
    report = run_driver(nvim, "code_actions.lua", env, out, 120)
    assert report["server_name"] == "qcn-lsp"
    assert report["omnifunc"] == "v:lua.vim.lsp.omnifunc"
    assert report["engine_state"].startswith("no model configured")
    assert report["code_action_provider"]["resolveProvider"] is True
    fix, rewrite = report["listed"]
    assert (fix["kind"], rewrite["kind"]) == ("quickfix", "refactor.rewrite")
    assert "edit" not in fix and "edit" not in rewrite
    assert report["code_action_chosen"]
    errors = [n["message"] for n in report["notifications"] if n["level"] == NVIM_LOG_ERROR]
    assert errors and all(message.strip() for message in errors), report["notifications"]
    assert not report["buffer_modified"]
    assert report["lines"] == SOURCE.splitlines()


def test_neovim_code_action_and_commands_with_the_tiny_model(
    nvim: str, project: Path, tmp_path: Path, tiny_model: Path
) -> None:
    """With a model: a completion arrives; the chosen fix and :QcnRefactor, :QcnEditFiles and
    :QcnRewrite either change the buffer (the server checked the edit first, the plugin asked)
    or end with a message that says why nothing came; :QcnStatus shows the engine."""
    out = tmp_path / "session.json"
    env = nvim_env(
        tmp_path,
        out,
        QCN_TEST_FILE=str(project / "calc.py"),
        QCN_TEST_COMMANDS="1",
        **explicit_server(tiny_model),
    )
    report = run_driver(nvim, "code_actions.lua", env, out, 240)
    assert report["engine_state"] == "ready"
    assert report["completion"] is not None and "result" in report["completion"]
    assert_edit_or_reason(report["buffer_modified"], report["lines"], report["action_messages"])
    for command in report["commands"]:
        assert command["done"], command
        changed = command["lines"] != SOURCE.splitlines()
        messages = [n["message"] for n in command["messages"]]
        if changed:
            assert report.get("confirmed"), "the edit was applied without asking"
            assert any(" applied to " in m for m in messages), messages
        else:
            # The outcome names its reason, once: nothing applied because ..., or the server's
            # error (the server sends no message of its own for a command's result).
            reasons = [m for m in messages if m.startswith("qcn-lsp: ")]
            assert len(reasons) == 1, messages
            assert (
                "nothing applied: " not in reasons[0]
                or reasons[0].split("nothing applied: ")[1].strip()
            ), messages
        print(f"neovim :{command['command']}: {command['ms']} ms, changed={changed}, {messages}")
    assert report["status_message"]["message"].startswith("qcn-lsp: engine ready")


def assert_edit_or_reason(modified: bool, lines: list[str], messages: list[str]) -> None:
    if modified:
        assert lines != SOURCE.splitlines()
        edited = "\n".join(lines) + "\n"
        assert (syntax_error_count(Path("calc.py"), edited) or 0) <= (
            syntax_error_count(Path("calc.py"), SOURCE) or 0
        )
    else:
        assert messages and all(m.strip() for m in messages), "neither an edit nor a reason"


def path_without_server() -> str:
    """PATH minus directories holding a `qcn-lsp`, so the plugin's own default is used."""
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(d for d in dirs if d and not (Path(d) / "qcn-lsp").exists())


def test_neovim_ghost_text_streams_and_accepts(
    nvim: str, project: Path, tmp_path: Path, tiny_model: Path
) -> None:
    """Typing in insert mode: the streamed text shows as an extmark and is replaced as it
    grows, moving the cursor clears it, <Tab> accepts it, and without ghost text <Tab> does
    what the user mapped it to. The plugin finds .venv/bin/qcn-lsp of this checkout itself."""
    server_command()  # the checkout's server exists
    out = tmp_path / "ghost.json"
    env = nvim_env(
        tmp_path,
        out,
        PATH=path_without_server(),
        QCN_TEST_FILE=str(project / "shapes.py"),
        QCN_TEST_SPOTS=json.dumps(GHOST_SPOTS),
        QCN_MODEL=str(tiny_model),
        QCN_SETTINGS=json.dumps(FAST),
    )
    report = run_driver(nvim, "ghost_text.lua", env, out, 240)
    assert report["inline_provider"], "the server offers textDocument/inlineCompletion"
    assert report["omnifunc"] == "v:lua.vim.lsp.omnifunc"
    spots = report["spots"]
    summary = [(s["line"], s.get("final"), len(s["events"])) for s in spots]

    streamed = [e for s in spots for e in s["events"] if e["shown"] and e["streaming"]]
    assert streamed, f"no streamed ghost text at any spot: {summary}"
    for event in streamed:
        # The extmark shows exactly the notification's text (replaced, not appended).
        first_line = event["text"].split("\n")[0].replace("\t", " " * 8)
        mark = event["extmark"]
        assert mark is not None, event
        assert mark["text"].startswith(first_line), event
        assert not mark["text"][len(first_line) :].strip(), event
        assert mark["virt_lines"] == event["text"].count("\n"), event

    accepted = [s for s in spots if s.get("accepted_lines")]
    assert accepted, f"no spot got a final ghost text to accept: {summary}"
    spot = accepted[0]
    assert spot["cleared_on_move"], "ghost text stayed after the cursor moved"
    expected = (spot["line_before"] + spot["final_again"]).split("\n")
    assert spot["accepted_lines"] == expected
    # Without ghost text the keys do what the user mapped them to.
    assert report["fallback_line"].strip() == "[dismiss][tab]x"
    print(
        f"neovim ghost text: model ready after {report['model_ready_ms']} ms; spots "
        f"{summary}; first ghost text {spot.get('first_ghost_ms')} ms after the first key"
    )


def test_neovim_missing_server_says_what_to_install(
    nvim: str, project: Path, tmp_path: Path
) -> None:
    """A server command that does not exist: one clear message, no Lua traceback."""
    out = tmp_path / "missing.json"
    env = nvim_env(
        tmp_path,
        out,
        QCN_LSP_CMD=json.dumps([str(tmp_path / "nowhere" / "qcn-lsp")]),
        QCN_TEST_FILES=json.dumps([str(project / "calc.py"), str(project / "use.py")]),
    )
    report = run_driver(nvim, "missing_server.lua", env, out, 60)
    seen = report["notifications"][: report["before_status"]]
    assert len(seen) == 1, seen
    message = seen[0]["message"]
    assert seen[0]["level"] == NVIM_LOG_ERROR
    assert "nowhere/qcn-lsp" in message and "not on PATH or not executable" in message
    assert "pipx install" in message and "cmd =" in message
    assert "traceback" not in message.lower()
    # Commands say the server is not running instead of failing.
    status = report["notifications"][report["before_status"] :]
    assert [n["level"] for n in status] == [NVIM_LOG_WARN], status
    assert "not running" in status[0]["message"]
    assert report["errmsg"] == "" and report["clients"] == 0
    assert SERVER.name == "qcn-lsp"


def test_neovim_quits_while_the_server_prefills(
    nvim: str, tmp_path: Path, tiny_model: Path
) -> None:
    """`:qall!` with a completion in flight: Neovim sends shutdown and exit, the server ends.
    bench/shutdown.py times this on a larger model."""
    server_command()
    report = neovim_quit(
        nvim, tmp_path, tiny_model, functions=400, delay_ms=50, settings=QUIT_SETTINGS
    )
    assert report["server_gone"], report
    print(
        f"neovim quit with a prefill in flight: {report['quit_seconds']:.2f} s; the completion "
        f"got {report.get('completion_error')!r}"
    )
