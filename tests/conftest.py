"""Shared fixtures: the generated random-weight test models (written once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `tiny` qwen3next GGUF (random weights: real compute and state, noise text)."""
    from engine.testing import write_test_model

    return write_test_model(tmp_path_factory.mktemp("models") / "tiny.gguf", preset="tiny", seed=0)
