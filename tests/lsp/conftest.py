"""Fixtures of the LSP-layer tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def add_project(tmp_path: Path) -> Path:
    """A workspace where pkg/a.py defines `add` and pkg/b.py imports and calls it."""
    root = tmp_path / "project"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "pkg" / "b.py").write_text("from pkg.a import add\n\nprint(add(1, 2))\n")
    return root
