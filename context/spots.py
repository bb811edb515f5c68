"""What a cursor needs from the repository: identifiers near it, and the spots visited lately."""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Container
from dataclasses import dataclass
from operator import attrgetter
from typing import TypeVar

from context.tags import FileTags, Import, Reference

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LINES_BEFORE = 30
_LINES_AFTER = 10
_MAX_NEAR_IDENTIFIERS = 60
# Each spot older than the latest weighs this much less in a ranking.
SPOT_DECAY = 0.5

_Lined = TypeVar("_Lined", Import, Reference)


def identifiers_near(
    text: str,
    line: int,
    col: int,
    *,
    skip_rows: Container[int] = (),
    skip_typed: bool = False,
) -> list[str]:
    """Identifiers around the cursor, closest first (same line, then by line distance).

    ``skip_rows`` leaves lines out; ``skip_typed`` leaves out the identifier touching the
    cursor, which is still being typed."""
    lines = text.split("\n")
    line = max(0, min(line, len(lines) - 1)) if lines else 0
    scored: dict[str, int] = {}
    for row in range(max(0, line - _LINES_BEFORE), min(len(lines), line + _LINES_AFTER + 1)):
        if row in skip_rows:
            continue
        for match in _IDENTIFIER.finditer(lines[row]):
            if skip_typed and row == line and match.start() <= col <= match.end():
                continue
            distance = abs(row - line) * 1000 + (abs(match.start() - col) if row == line else 0)
            # Text before the cursor is what the user is writing about: prefer it.
            distance += 500 if row > line else 0
            name = match.group()
            if name not in scored or scored[name] > distance:
                scored[name] = distance
    ordered = sorted(scored, key=lambda name: (scored[name], name))
    return ordered[:_MAX_NEAR_IDENTIFIERS]


def _on_lines(items: tuple[_Lined, ...], first: int, last: int) -> tuple[_Lined, ...]:
    """The part of ``items`` (sorted by line) on lines ``first`` to ``last``."""
    line = attrgetter("line")
    return items[bisect_left(items, first, key=line) : bisect_right(items, last, key=line)]


def import_rows(tags: FileTags | None, line: int) -> frozenset[int]:
    """Lines of import statements in ``identifiers_near``'s window around ``line``."""
    if tags is None:
        return frozenset()
    # Only the window's part of the tags is looked at: this runs on every keystroke.
    first, last = line - _LINES_BEFORE, line + _LINES_AFTER
    rows = {item.line for item in _on_lines(tags.imports, first, last)}
    rows.update(
        item.line for item in _on_lines(tags.references, first, last) if item.kind == "import"
    )
    return frozenset(rows)


@dataclass(frozen=True, slots=True)
class Spot:
    line: int
    col: int


class CursorSpots:
    """The places of one file the cursor visited lately, most recent first.

    A visit within ``radius`` lines of a known spot moves that spot (typing, small moves);
    farther away it is a new spot, and the oldest beyond ``limit`` is forgotten. Ranking seeds
    from all of them, the older with less weight, so a selection made while the user goes back
    and forth between two places serves both."""

    def __init__(self, *, radius: int = 20, limit: int = 4) -> None:
        self.radius = radius
        self.limit = limit
        self._spots: list[Spot] = []

    def visit(self, line: int, col: int) -> None:
        for position, spot in enumerate(self._spots):
            if abs(spot.line - line) <= self.radius:
                del self._spots[position]
                break
        self._spots.insert(0, Spot(line, col))
        del self._spots[self.limit :]

    def weighted(self) -> list[tuple[Spot, float]]:
        """Spots with their seed weights: 1 for the latest, ``SPOT_DECAY`` times less for each
        older one."""
        return [(spot, SPOT_DECAY**age) for age, spot in enumerate(self._spots)]
