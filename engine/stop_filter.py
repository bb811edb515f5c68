"""Stop sequences over streamed text, whatever the tokenization splits them into."""

from __future__ import annotations

from collections.abc import Sequence


class StopFilter:
    """Holds back text that might be the start of a stop sequence."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""

    def push(self, text: str) -> tuple[str, bool]:
        """(text safe to emit, whether a stop sequence is complete)."""
        buffer = self._held + text
        # Generation ends where the first stop string is complete, whatever the tokenization:
        # (end, start) of each stop's first occurrence, earliest end first.
        found = [(i + len(s), i) for s in self._stops if (i := buffer.find(s)) >= 0]
        if found:
            self._held = ""
            return buffer[: min(found)[1]], True
        keep = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(buffer)), keep, -1):
                if buffer.endswith(stop[:k]):
                    keep = k
                    break
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held
