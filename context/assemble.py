"""Cache-stable repository context for a cursor.

The assembled context becomes the ``REPO`` segment of the prompt, the most expensive part to
prefill, so it changes only when something worth a re-rank happened: a save, a change of focus
file or budget, a large edit, or a jump of the cursor far away. Between those, the previous
``RepoContext`` (same ``epoch``) is returned unchanged. Within a context, files come in a
stable order: files not edited in this session first (by path), recently edited ones last.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from context.index import RepoIndex
from context.rank import personalized_pagerank
from context.tags import Definition
from engine.formats import repo_context_text

TokenCounter = Callable[[str], int]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LINES_BEFORE = 30
_LINES_AFTER = 10
_MAX_NEAR_IDENTIFIERS = 60
# Names with definitions in more files than this are too ambiguous to pin.
_MAX_PINNED_DEFINING_FILES = 6
_MAX_PINNED_NAMES = 16
# A definition longer than this shows its head and the signatures inside it.
_MAX_BODY_LINES = 60
_HEAD_LINES = 8
_MAX_CANDIDATES = 300
# Once this many candidates in a row did not fit, the budget is as good as full: rendering and
# counting the remaining low-ranked files took most of an assembly on a large repository.
_MAX_MISSES = 24
_GAP_MARKER = "..."


def estimate_tokens(text: str) -> int:
    """Cheap token estimate: about 3.5 characters per token for code."""
    return math.ceil(len(text) / 3.5)


@dataclass(frozen=True, slots=True)
class ContextFile:
    path: str
    content: str


@dataclass(frozen=True, slots=True)
class RepoContext:
    epoch: int
    repo_name: str
    files: tuple[ContextFile, ...]


def render_repo_context(context: RepoContext) -> str:
    """Qwen's repo-level layout, without the current file (the engine appends it)."""
    # One rendering for the whole project: the engine's prompt must match this byte for byte.
    return repo_context_text(
        context.repo_name, [(item.path, item.content) for item in context.files]
    )


def identifiers_near(text: str, line: int, col: int) -> list[str]:
    """Identifiers around the cursor, closest first (same line, then by line distance)."""
    lines = text.split("\n")
    line = max(0, min(line, len(lines) - 1)) if lines else 0
    scored: dict[str, tuple[int, int]] = {}
    for row in range(max(0, line - _LINES_BEFORE), min(len(lines), line + _LINES_AFTER + 1)):
        for match in _IDENTIFIER.finditer(lines[row]):
            distance = abs(row - line) * 1000 + (abs(match.start() - col) if row == line else 0)
            # Text before the cursor is what the user is writing about: prefer it.
            distance += 500 if row > line else 0
            name = match.group()
            if name not in scored or scored[name] > (distance, 0):
                scored[name] = (distance, 0)
    ordered = sorted(scored, key=lambda name: (scored[name], name))
    return ordered[:_MAX_NEAR_IDENTIFIERS]


@dataclass(slots=True)
class _FilePlan:
    whole: bool = False
    skeleton: bool = False
    bodies: set[int] = field(default_factory=set)  # indices into the file's definitions


def render_file(
    text: str,
    definitions: tuple[Definition, ...],
    plan: _FilePlan,
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


# Plan key: whole, skeleton, bodies; ``None`` stands for the file's plain token count.
_PlanKey = tuple[bool, bool, frozenset[int]] | None
# About 2 bytes of memory per character of a cached file's text (text, lines and renderings).
_RENDER_CACHE_CHARS = 12_000_000


@dataclass(slots=True)
class _CachedFile:
    content: str
    definitions: tuple[Definition, ...]
    lines: list[str] | None = None
    renders: dict[tuple[_PlanKey, TokenCounter], tuple[str, int]] = field(default_factory=dict)
    chars: int = 0


class _RenderCache:
    """Rendered files and their token costs, shared by all assemblers.

    Assemblies for nearby cursors try mostly the same files with the same plans (whole, or the
    skeleton): rendering and counting them again was half of an assembly on a large repository.
    An entry holds the text and definitions it was rendered from and is used only while both
    are still the same, so an edited or re-indexed file is rendered afresh. Least recently used
    files go once the cached text passes ``max_chars``.
    """

    def __init__(self, max_chars: int) -> None:
        self._max_chars = max_chars
        self._chars = 0
        self._files: OrderedDict[str, _CachedFile] = OrderedDict()
        self._lock = threading.Lock()

    def measure(
        self,
        path: str,
        content: str,
        definitions: tuple[Definition, ...],
        plan: _FilePlan | None,
        count_tokens: TokenCounter,
    ) -> tuple[str, int]:
        """``plan``'s rendering of ``path`` and its cost in the context, or, without a plan,
        the token count of the plain content."""
        key = (
            None if plan is None else (plan.whole, plan.skeleton, frozenset(plan.bodies)),
            count_tokens,
        )
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
            if plan is None:
                body, cost = "", count_tokens(content)
            else:
                if not plan.whole and entry.lines is None:
                    entry.lines = content.split("\n")
                    entry.chars += len(content)
                    self._chars += len(content)
                body = render_file(content, definitions, plan, entry.lines)
                cost = count_tokens(f"<|file_sep|>{path}\n{body}\n")
            if body is not content:
                entry.chars += len(body)
                self._chars += len(body)
            entry.renders[key] = (body, cost)
            while self._chars > self._max_chars and len(self._files) > 1:
                _gone, evicted = self._files.popitem(last=False)
                self._chars -= evicted.chars
            return body, cost


_render_cache = _RenderCache(_RENDER_CACHE_CHARS)


class ContextAssembler:
    def __init__(
        self,
        index: RepoIndex,
        count_tokens: TokenCounter = estimate_tokens,
        *,
        large_edit_chars: int = 200,
        far_jump_lines: int = 40,
        whole_file_share: float = 0.25,
    ) -> None:
        self.index = index
        self.count_tokens = count_tokens
        self.large_edit_chars = large_edit_chars
        self.far_jump_lines = far_jump_lines
        self.whole_file_share = whole_file_share
        self._last: RepoContext | None = None
        # What the last ranking was for: focus key, budget, saves seen, text length, line.
        self._anchor: tuple[str, int, int, int, int] | None = None
        self._epoch = 0
        self.reranks = 0

    def invalidate(self) -> None:
        """Force a re-rank on the next call (e.g. after a workspace-wide change)."""
        self._anchor = None

    def _needs_rerank(self, key: str, budget: int, text: str, line: int) -> bool:
        if self._last is None or self._anchor is None:
            return True
        focus, old_budget, saves, length, anchor_line = self._anchor
        return (
            focus != key
            or old_budget != budget
            or saves != self.index.saves
            or abs(len(text) - length) > self.large_edit_chars
            or abs(line - anchor_line) > self.far_jump_lines
        )

    def assemble(
        self, path: str, text: str, line: int, col: int, budget_tokens: int
    ) -> RepoContext:
        """Repository context for a cursor at (line, col), both 0-based, in ``path``."""
        key = self.index.key(path)
        if self._last is not None and not self._needs_rerank(key, budget_tokens, text, line):
            return self._last
        self.reranks += 1
        self._anchor = (key, budget_tokens, self.index.saves, len(text), line)
        files = self._select(key, text, line, col, budget_tokens)
        if self._last is not None and self._last.files == files:
            return self._last
        self._epoch += 1
        self._last = RepoContext(self._epoch, self.index.repo_name, files)
        return self._last

    def _select(
        self, focus: str, text: str, line: int, col: int, budget: int
    ) -> tuple[ContextFile, ...]:
        graph = self.index.graph
        near = identifiers_near(text, line, col)
        pinned: list[tuple[str, int]] = []  # (file, definition index), most wanted first
        seeds: dict[str, float] = {focus: 1.0}
        imported = graph.imports(focus)
        for target in imported:
            seeds[target] = seeds.get(target, 0.0) + 0.3
        pinned_names = 0
        for rank, name in enumerate(near):
            defining = graph.defining_files(name) - {focus}
            if not defining or len(defining) > _MAX_PINNED_DEFINING_FILES:
                continue
            closeness = 1.0 / (1 + rank)
            for target in defining:
                seeds[target] = seeds.get(target, 0.0) + closeness / len(defining)
            if pinned_names < _MAX_PINNED_NAMES:
                pinned_names += 1
                # Prefer the definitions in files the focus file imports.
                for target in sorted(defining, key=lambda p: (p not in imported, p))[:2]:
                    for position, definition in enumerate(graph.files[target].definitions):
                        if definition.name == name:
                            pinned.append((target, position))
        for recent in self.index.recently_edited:
            if recent != focus:
                seeds[recent] = seeds.get(recent, 0.0) + 0.2
        scores = personalized_pagerank(graph.file_edges(), seeds, limit=_MAX_CANDIDATES + 1)

        header = self.count_tokens(f"<|repo_name|>{self.index.repo_name}\n")
        remaining = budget - header
        plans: dict[str, _FilePlan] = {}
        rendered: dict[str, tuple[str, int]] = {}
        texts: dict[str, str] = {}

        def text_of(path: str) -> str | None:
            if path not in texts:
                content = self.index.read_text(path)
                if content is None:
                    return None
                texts[path] = content
            return texts[path]

        def try_plan(path: str, plan: _FilePlan) -> bool:
            nonlocal remaining
            content = text_of(path)
            tags = graph.files.get(path)
            if content is None or tags is None:
                return False
            body, cost = _render_cache.measure(
                path, content, tags.definitions, plan, self.count_tokens
            )
            previous_cost = rendered[path][1] if path in rendered else 0
            if cost - previous_cost > remaining:
                return False
            remaining -= cost - previous_cost
            plans[path] = plan
            rendered[path] = (body, cost)
            return True

        for path, position in pinned:
            current = plans.get(path, _FilePlan())
            if position in current.bodies:
                continue
            try_plan(path, _FilePlan(bodies={*current.bodies, position}))

        whole_limit = max(1, int(budget * self.whole_file_share))
        ranked = [path for path in scores if path != focus][:_MAX_CANDIDATES]
        misses = 0
        for path in ranked:
            if remaining <= 0 or misses >= _MAX_MISSES:
                break
            current = plans.get(path, _FilePlan())
            if current.whole:
                continue
            content = text_of(path)
            if content is None:
                continue
            tags = graph.files.get(path)
            if tags is None:
                continue
            tokens = _render_cache.measure(
                path, content, tags.definitions, None, self.count_tokens
            )[1]
            if tokens <= whole_limit and try_plan(path, _FilePlan(whole=True)):
                continue
            if current.skeleton or try_plan(
                path, _FilePlan(skeleton=True, bodies=set(current.bodies))
            ):
                misses = 0
            else:
                misses += 1

        recency = {path: order for order, path in enumerate(self.index.recently_edited)}
        ordered = sorted(rendered, key=lambda path: (recency.get(path, -1), path))
        return tuple(ContextFile(path, rendered[path][0]) for path in ordered)
