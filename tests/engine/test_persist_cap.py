"""The persisted state stays under its disk cap (`cache.stateDiskMB`): oldest entries first,
a full snapshot together with the partial entries that need it."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.persist import StateStore

MIB = 1 << 20


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + bytes(100))
    return path


def _store(tmp_path: Path, model_file: Path, cap: int) -> StateStore:
    return StateStore(
        tmp_path / "state", model_path=model_file, context_signature="sig", size_limit=cap
    )


def _volume(tmp_path: Path) -> int:
    return sum(p.stat().st_size for p in (tmp_path / "state").rglob("*") if p.is_file())


def test_sessions_under_a_cap_evict_the_oldest_full_snapshot_with_its_partials(
    tmp_path: Path, model_file: Path
) -> None:
    cap = 12 * MIB
    for session in range(6):  # each session: a full snapshot and two partials that need it
        store = _store(tmp_path, model_file, cap)
        full = (1000 + session, bytes([session]) * 20)
        store.save_async(full[1], full[0], bytearray(3 * MIB)).result()
        for k in (1, 2):
            digest = bytes([session, k]) * 10
            store.save_async(digest, 900 + k, bytearray(MIB), parent=full).result()
        assert _volume(tmp_path) <= cap + MIB  # + sqlite pages and headers
        entries = store.candidates(0, 10_000)
        parents = {e[2] for e in entries if e[2] is not None}
        fulls = {(n, d) for n, d, parent in entries if parent is None}
        assert parents <= fulls  # no partial outlives its parent
        assert (full[0], full[1]) in fulls  # the newest session is always kept whole
        assert len(entries) == 3 * len(fulls)
        store.close()
    assert len(fulls) == 2  # 2 sessions of 5 MiB (+ headers) fit under 12 MiB, not 3
    assert store.evicted >= 1


def test_an_entry_larger_than_the_cap_is_not_written(tmp_path: Path, model_file: Path) -> None:
    store = _store(tmp_path, model_file, 2 * MIB)
    try:
        store.save_async(b"a" * 20, 10, bytearray(3 * MIB)).result()
        assert store.candidates(0, 100) == []
        assert _volume(tmp_path) < MIB
    finally:
        store.close()
