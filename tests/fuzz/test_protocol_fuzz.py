"""A CI-sized run of the protocol fuzzer (tests/fuzz/protocol.py): a few hundred hostile
messages, every kind at least once; the 10,000-message run is done by hand
(docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

from tests.fuzz.protocol import fuzz


def test_the_server_answers_and_survives_hostile_messages(tiny_model: Path, tmp_path: Path) -> None:
    tally = fuzz(tiny_model, tmp_path, messages=400, steps=40, rounds=5)
    print(tally.report())
    assert not tally.unseen, f"kinds of message never sent: {tally.unseen}"
    assert tally.messages >= 400
    # Every request was answered once (checked after each example, also after each stop).
    assert tally.answered == tally.requests
