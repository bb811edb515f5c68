"""The engine tests' model and a started engine on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.local import LocalEngine
from tests.engine.helpers import engine_config


@pytest.fixture
def model_path(tiny_model: Path) -> Path:
    return tiny_model


@pytest.fixture
async def engine(model_path: Path) -> AsyncIterator[LocalEngine]:
    engine = LocalEngine(engine_config(model_path))
    await engine.start()
    yield engine
    await engine.close()
