"""`qcn-lsp doctor` after `make demo`: it finds the demo's test model and names it."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.cli.tools import run_cli


def test_doctor_checks_and_names_the_demos_model(tiny_model: Path, tmp_path: Path) -> None:
    nothing = run_cli("doctor", "--no-load", XDG_CACHE_HOME=str(tmp_path))
    assert nothing.returncode == 1
    assert "[!!] no model configured\n" in nothing.stdout
    assert "make-test-model" in nothing.stdout
    demo_model = tmp_path / "qcn-lsp" / "models" / "tiny.gguf"
    demo_model.parent.mkdir(parents=True)
    shutil.copy(tiny_model, demo_model)
    found = run_cli("doctor", XDG_CACHE_HOME=str(tmp_path))
    assert f"no model configured; checking the demo's test model {demo_model}" in found.stdout
    assert f"set QCN_MODEL={demo_model}" in found.stdout
    assert "architecture qwen3next" in found.stdout
    assert "llama_model_is_hybrid=True" in found.stdout
    assert "1 problem(s) found" in found.stdout  # an editor would still get no model
