"""A file's entry in the repository context: whole, or chosen definitions with gap markers,
and a cache of the renderings and their costs shared by all assemblers."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from context.cost import ContextCost
from context.tags import Definition

# A definition longer than this shows its head and the signatures inside it.
_MAX_BODY_LINES = 60
_HEAD_LINES = 8
_GAP_MARKER = "..."


@dataclass(slots=True)
class FilePlan:
    """What of a file the context shows."""

    whole: bool = False
    skeleton: bool = False  # every definition's first line
    bodies: set[int] = field(default_factory=set)  # indices into the file's definitions


def render_file(
    text: str,
    definitions: tuple[Definition, ...],
    plan: FilePlan,
    lines: list[str] | None = None,
) -> str:
    """A file's content in the context: whole, or chosen lines with gap markers.

    ``lines`` is ``text.split("\\n")`` when the caller has it already (the render cache keeps
    one per file, which is rendered for several plans)."""
    if plan.whole:
        return text.rstrip("\n")
    if lines is None:
        lines = text.split("\n")
    shown: set[int] = set()
    if plan.skeleton:
        shown.update(d.start_line for d in definitions)
    for position in sorted(plan.bodies):
        chosen = definitions[position]
        # Signatures of enclosing definitions (a method's class) keep the snippet readable.
        shown.update(
            d.start_line
            for d in definitions
            if d.start_line < chosen.start_line and d.end_line >= chosen.end_line
        )
        if chosen.end_line - chosen.start_line < _MAX_BODY_LINES:
            shown.update(range(chosen.start_line, chosen.end_line + 1))
        else:
            shown.update(range(chosen.start_line, chosen.start_line + _HEAD_LINES))
            shown.update(
                d.start_line
                for d in definitions
                if chosen.start_line < d.start_line <= chosen.end_line
            )
    rendered: list[str] = []
    previous = -1
    for row in sorted(row for row in shown if row < len(lines)):
        if row != previous + 1:
            indent = lines[row][: len(lines[row]) - len(lines[row].lstrip())]
            rendered.append(indent + _GAP_MARKER)
        rendered.append(lines[row])
        previous = row
    if previous < len(lines) - 1 and rendered:
        rendered.append(_GAP_MARKER)
    return "\n".join(rendered)


# Plan key: whole, skeleton, bodies.
_PlanKey = tuple[bool, bool, frozenset[int]]
# About 2 bytes of memory per character of a cached file's text (text, lines and renderings).
_RENDER_CACHE_CHARS = 12_000_000


@dataclass(slots=True)
class _CachedFile:
    content: str
    definitions: tuple[Definition, ...]
    lines: list[str] | None = None
    renders: dict[tuple[_PlanKey, ContextCost], tuple[str, int]] = field(default_factory=dict)
    chars: int = 0


class RenderCache:
    """Rendered files and their token costs, shared by all assemblers.

    Assemblies for nearby cursors try mostly the same files with the same plans (whole, or the
    skeleton): rendering and counting them again was half of an assembly on a large repository.
    An entry holds the text and definitions it was rendered from and is used only while both
    are still the same, so an edited or re-indexed file is rendered afresh. Least recently used
    files go once the cached text passes ``max_chars``.
    """

    def __init__(self, max_chars: int = _RENDER_CACHE_CHARS) -> None:
        self._max_chars = max_chars
        self._chars = 0
        self._files: OrderedDict[str, _CachedFile] = OrderedDict()
        self._lock = threading.Lock()

    def measure(
        self,
        path: str,
        content: str,
        definitions: tuple[Definition, ...],
        plan: FilePlan,
        cost: ContextCost,
    ) -> tuple[str, int]:
        """``plan``'s rendering of ``path`` and the tokens its entry costs."""
        key = ((plan.whole, plan.skeleton, frozenset(plan.bodies)), cost)
        with self._lock:
            entry = self._files.get(path)
            if entry is None or not (
                entry.content == content
                and (entry.definitions is definitions or entry.definitions == definitions)
            ):
                if entry is not None:
                    self._chars -= entry.chars
                entry = _CachedFile(content, definitions, chars=len(content))
                self._chars += entry.chars
                self._files[path] = entry
            self._files.move_to_end(path)
            cached = entry.renders.get(key)
            if cached is not None:
                return cached
            if not plan.whole and entry.lines is None:
                entry.lines = content.split("\n")
                entry.chars += len(content)
                self._chars += len(content)
            body = render_file(content, definitions, plan, entry.lines)
            tokens = cost.file(path, body)
            if body is not content:
                entry.chars += len(body)
                self._chars += len(body)
            entry.renders[key] = (body, tokens)
            while self._chars > self._max_chars and len(self._files) > 1:
                _gone, evicted = self._files.popitem(last=False)
                self._chars -= evicted.chars
            return body, tokens
