"""`make demo` (scripts/demo.py) as a new user meets it: every path ends, with an exit code
that says what happened, and the output says what it shows and what to do next."""

from __future__ import annotations

import hashlib
import inspect
import textwrap
from pathlib import Path

import pytest

from tests.cli.tools import run_demo
from tests.lsp.helpers import REPO_ROOT


@pytest.mark.parametrize("model", ["/nonexistent.gguf", str(REPO_ROOT / "README.md")])
def test_a_bad_model_ends_the_demo_with_code_1(model: str, tmp_path: Path) -> None:
    # A hang fails the test through the timeout.
    result = run_demo(timeout=90, QCN_MODEL=model, XDG_CACHE_HOME=str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the model did not load" in result.stderr
    assert "unset QCN_MODEL" in result.stderr and "doctor --model" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_demo_types_explains_and_ends_with_next_steps(tmp_path: Path) -> None:
    source = Path(inspect.getsourcefile(textwrap) or textwrap.__file__)
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    result = run_demo(timeout=600, XDG_CACHE_HOME=str(tmp_path))
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    model = tmp_path / "qcn-lsp" / "models" / "tiny.gguf"
    assert model.is_file()  # where `qcn-lsp doctor` looks for it
    assert "the file on disk stays as it is" in out
    assert "first keystroke: reading the whole prompt" in out
    rows = [line for line in out.splitlines() if line.startswith("'w")]
    assert len(rows) == len("width = len(lines) + ")
    assert all("\ufffd" not in row for row in rows)  # printable: `?` for broken UTF-8
    assert "weights are random" in out
    assert "{'promptTokens'" not in out  # a sentence, not a raw dict
    assert "last keystroke that ran the model:" in out
    steps = out[out.index("Next:") :]
    for step in ("make install", "editors/README.md", f"QCN_MODEL={model} nvim -u", "doctor"):
        assert step in steps
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before
