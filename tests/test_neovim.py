"""A real, independent LSP client: headless Neovim 0.7 with editors/neovim driving qcn-lsp."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from lsprotocol.converters import get_converter
from pygls.workspace import PositionCodec

from qcn_lsp.edits import (
    EditSupport,
    FileEdit,
    WorkspaceFiles,
    plan_changes,
    syntax_error_count,
    to_workspace_edit,
)
from tests.lsp.helpers import REPO_ROOT, server_env

NVIM = shutil.which("nvim")
pytestmark = pytest.mark.skipif(NVIM is None, reason="nvim not installed (apt-get install neovim)")

SOURCE = 'label = "😀 sum"\ndef add(a, b):\n    return a +\n'
NVIM_LOG_ERROR = 4  # vim.log.levels.ERROR
FAST_EDITS = {"edits": {"maxTokens": 32}}
NEOVIM_SUPPORT = EditSupport.of(
    types.ClientCapabilities(
        workspace=types.WorkspaceClientCapabilities(
            workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=False)
        )
    )
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / ".git").mkdir()  # the root marker editors/neovim looks for
    (root / "calc.py").write_text(SOURCE)
    (root / "use.py").write_text("from calc import add\nprint(add(1, 2))\n")
    return root


def run_nvim(args: list[str], env: dict[str, str], out: Path, timeout: float) -> dict[str, Any]:
    assert NVIM is not None
    completed = subprocess.run(
        [NVIM, "--headless", *args],
        env=env,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )
    assert out.exists(), completed.stderr.decode(errors="replace")[-2000:]
    report = json.loads(out.read_text())
    assert "error" not in report, report["error"]
    return report


def test_neovim_applies_the_servers_edit_shape(project: Path, tmp_path: Path) -> None:
    """Edits built for a client without documentChanges, applied by Neovim's own LSP code."""
    files = WorkspaceFiles([project], lambda path: None)
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
        support=NEOVIM_SUPPORT,
        label="test",
        codec=PositionCodec(types.PositionEncodingKind.Utf16),
    )
    out = tmp_path / "report.json"
    paths = [str(project / "calc.py"), str(project / "use.py")]
    env = server_env(
        QCN_TEST_EDIT=json.dumps(get_converter().unstructure(edit)),
        QCN_TEST_FILES=json.dumps(paths),
        QCN_TEST_OUT=str(out),
    )
    report = run_nvim(["-u", "NONE", "-c", "luafile tests/nvim/apply_edit.lua"], env, out, 60)
    assert report["files"][paths[0]] == [
        'label = "😀 total"',
        "def add(a, b):",
        "    return a + b",
    ]
    assert report["files"][paths[1]] == ["from calc import add", "print(add(2, 3))"]


def test_neovim_session_lists_and_resolves_code_actions(project: Path, tmp_path: Path) -> None:
    """Neovim starts qcn-lsp through editors/neovim, lists actions and runs its own
    code-action flow (resolve, then apply whatever edit comes back); no model configured."""
    report = nvim_session(project, tmp_path, model=None)
    assert report["server_name"] == "qcn-lsp"
    assert report["code_action_provider"]["resolveProvider"] is True
    fix, rewrite = report["listed"]
    assert (fix["kind"], rewrite["kind"]) == ("quickfix", "refactor.rewrite")
    assert "edit" not in fix and "edit" not in rewrite
    assert report["code_action_chosen"]
    # Neovim shows the server's error and the buffer is untouched.
    errors = [n["message"] for n in report["notifications"] if n["level"] == NVIM_LOG_ERROR]
    assert errors and all(message.strip() for message in errors), report["notifications"]
    assert not report["buffer_modified"]
    assert report["lines"] == SOURCE.splitlines()


def test_neovim_session_with_the_tiny_model(
    project: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """With a model: a completion arrives, and the chosen fix is either applied by Neovim
    (the server checked it first: the buffer still parses) or refused with a reason."""
    for module in ("qcn_lsp.services", "engine.formats", "engine.toolcalls", "engine.testing"):
        pytest.importorskip(module, reason=f"{module} not built yet")
    tiny_model = request.getfixturevalue("tiny_model")
    report = nvim_session(project, tmp_path, model=tiny_model)
    if report["completion_provider"]:
        assert report["completion"] is not None and "result" in report["completion"]
    if report["buffer_modified"]:
        assert report["lines"] != SOURCE.splitlines()
        edited = "\n".join(report["lines"]) + "\n"
        assert (syntax_error_count(Path("calc.py"), edited) or 0) <= (
            syntax_error_count(Path("calc.py"), SOURCE) or 0
        )
    else:
        assert report["notifications"], "neither an edit nor a reason came back"


def nvim_session(project: Path, tmp_path: Path, model: Path | None) -> dict[str, Any]:
    out = tmp_path / "session.json"
    # Short edit proposals keep the random-weight model quick.
    extra = {"QCN_MODEL": str(model), "QCN_SETTINGS": json.dumps(FAST_EDITS)} if model else {}
    env = server_env(
        QCN_LSP_CMD=json.dumps([sys.executable, "-m", "qcn_lsp", "--log-level", "WARNING"]),
        QCN_TEST_FILE=str(project / "calc.py"),
        QCN_TEST_OUT=str(out),
        **extra,
    )
    return run_nvim(
        ["-u", "editors/neovim/init.lua", "-c", "luafile tests/nvim/lsp_session.lua"], env, out, 150
    )
