"""The README's commands work as written (from the checkout, as the README says)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tests.cli.tools import run_cli
from tests.lsp.helpers import REPO_ROOT


def _commands_section() -> list[list[str]]:
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("## Commands") :]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None
    return [shlex.split(line, comments=True) for line in block.group(1).splitlines()]


def test_the_readmes_commands_run_as_written(tmp_path: Path) -> None:
    commands = _commands_section()
    assert all(command[0] == "qcn-lsp" for command in commands)
    ran = set()
    for command in commands:
        args = command[1:]
        if not args or args[0] == "--tcp":
            continue  # the servers: tests/cli/test_cli_errors.py and the LSP tests run them
        # Files the commands write go to the test's folder instead of /tmp.
        args = [arg.replace("/tmp/", f"{tmp_path}/") for arg in args]
        result = run_cli(*args, cwd=REPO_ROOT, XDG_CACHE_HOME=str(tmp_path / "cache"))
        assert "Traceback" not in result.stderr, args
        # doctor finds no model here: that is one of its problems, exit code 1.
        assert result.returncode == (1 if args[0] == "doctor" else 0), (args, result.stderr)
        ran.add(args[0])
    assert ran == {"doctor", "make-test-model", "index", "context"}
