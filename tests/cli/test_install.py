"""`make install` puts a `qcn-lsp` command into PREFIX/bin, in its own environment, that runs
from any folder; `make uninstall` takes it away."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lsp.helpers import REPO_ROOT


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args, f"PYTHON={sys.executable}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
    )


@pytest.mark.timeout(1800)
def test_make_install_into_a_prefix_and_uninstall(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    installed = _make("install", f"PREFIX={prefix}")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    command = prefix / "bin" / "qcn-lsp"
    assert f"installed {command}" in installed.stdout
    assert f"{prefix / 'bin'} is not on your PATH" in installed.stdout
    assert "deprecated" not in installed.stderr  # setuptools' license-table warning

    # A project with its own `context` package, and a PYTHONPATH into the checkout: neither
    # reaches the installed server's imports.
    project = tmp_path / "project"
    (project / "context").mkdir(parents=True)
    (project / "context" / "__init__.py").write_text("raise SystemExit('the project, not qcn')\n")
    (project / "main.py").write_text("def main():\n    return 1\n")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "XDG_CACHE_HOME": str(tmp_path / "c")}
    ran = subprocess.run(
        [str(command), "index", "."], cwd=project, capture_output=True, text=True, env=env
    )
    assert ran.returncode == 0, ran.stderr
    assert "files: 2" in ran.stdout
    where = subprocess.run(
        [
            str(prefix / "lib" / "qcn-lsp" / "bin" / "python"),
            "-I",
            "-c",
            "import qcn_lsp; print(qcn_lsp.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(prefix)

    assert _make("uninstall", f"PREFIX={prefix}").returncode == 0
    assert not command.exists() and not (prefix / "lib" / "qcn-lsp").exists()
