"""A short soak (bench/soak.py) in CI: a few hundred keystrokes with completions, file
switches, saves and a code action through one server; memory, checkpoints, cache and
resources stay bounded. Latency is the full run's business (docs/benchmarks.md), never a
test's."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import resource_checks, soak

KEYSTROKES = 1000  # one code action; a switch to each of the first three files


@pytest.mark.timeout(900)
async def test_a_short_soak_stays_bounded(tiny_model: Path, tmp_path: Path) -> None:
    result = await soak(tiny_model, KEYSTROKES, tmp_path)
    failed = [line for held, line in resource_checks(result, KEYSTROKES) if not held]
    assert not failed, failed
