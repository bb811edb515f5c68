"""Cache-stable repository context for a cursor.

The assembled context becomes the ``REPO`` segment of the prompt, the most expensive part to
prefill, so it changes only when something worth a re-rank happened: a save, a change of focus
file or budget, a large edit, or a jump of the cursor far away. Between those, the previous
``RepoContext`` (same ``epoch``) is returned unchanged. Within a context, files come in a
stable order: files not edited in this session first (by path), recently edited ones last.
The caller renders it: the assembler knows the cost of each entry (a ``ContextCost``), not the
prompt's layout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from context.cost import CharacterCost, ContextCost
from context.graph import SymbolGraph
from context.index import RepoIndex
from context.rank import personalized_pagerank
from context.render import FilePlan, RenderCache

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LINES_BEFORE = 30
_LINES_AFTER = 10
_MAX_NEAR_IDENTIFIERS = 60
# Names with definitions in more files than this are too ambiguous to pin.
_MAX_PINNED_DEFINING_FILES = 6
_MAX_PINNED_NAMES = 16
_MAX_CANDIDATES = 300
# Once this many candidates in a row did not fit, the budget is as good as full: rendering and
# counting the remaining low-ranked files took most of an assembly on a large repository.
_MAX_MISSES = 24


@dataclass(frozen=True, slots=True)
class ContextFile:
    path: str
    content: str  # what the context shows of the file, without a trailing newline


@dataclass(frozen=True, slots=True)
class RepoContext:
    """Ranked files for a prompt; ``epoch`` changes whenever ``files`` do."""

    epoch: int
    repo_name: str
    files: tuple[ContextFile, ...]
    tokens: int  # their cost, header included, as the assembler's ``ContextCost`` counts


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


_render_cache = RenderCache()


class ContextAssembler:
    def __init__(
        self,
        index: RepoIndex,
        cost: ContextCost | None = None,
        *,
        large_edit_chars: int = 200,
        far_jump_lines: int = 40,
        whole_file_share: float = 0.25,
    ) -> None:
        self.index = index
        self.cost = cost if cost is not None else CharacterCost()
        self.large_edit_chars = large_edit_chars
        self.far_jump_lines = far_jump_lines
        self.whole_file_share = whole_file_share
        self._last: RepoContext | None = None
        # What the last ranking was for: focus key, budget, saves seen, text length, line.
        self._anchor: tuple[str, int, int, int, int] | None = None
        self._epoch = 0
        self.reranks = 0

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
        with self.index.reading() as graph:
            files, tokens = self._select(graph, key, text, line, col, budget_tokens)
        if self._last is not None and self._last.files == files:
            return self._last
        self._epoch += 1
        self._last = RepoContext(self._epoch, self.index.repo_name, files, tokens)
        return self._last

    def _select(
        self, graph: SymbolGraph, focus: str, text: str, line: int, col: int, budget: int
    ) -> tuple[tuple[ContextFile, ...], int]:
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
        recently_edited = tuple(self.index.recently_edited)
        for recent in recently_edited:
            if recent != focus:
                seeds[recent] = seeds.get(recent, 0.0) + 0.2
        scores = personalized_pagerank(graph.file_edges(), seeds, limit=_MAX_CANDIDATES + 1)

        header = self.cost.header(self.index.repo_name)
        remaining = budget - header
        plans: dict[str, FilePlan] = {}
        rendered: dict[str, tuple[str, int]] = {}
        texts: dict[str, str] = {}

        def text_of(path: str) -> str | None:
            if path not in texts:
                content = self.index.read_text(path)
                if content is None:
                    return None
                texts[path] = content
            return texts[path]

        def measure(path: str, plan: FilePlan) -> tuple[str, int] | None:
            content = text_of(path)
            tags = graph.files.get(path)
            if content is None or tags is None:
                return None
            return _render_cache.measure(path, content, tags.definitions, plan, self.cost)

        def try_plan(path: str, plan: FilePlan) -> bool:
            nonlocal remaining
            measured = measure(path, plan)
            if measured is None:
                return False
            previous_cost = rendered[path][1] if path in rendered else 0
            if measured[1] - previous_cost > remaining:
                return False
            remaining -= measured[1] - previous_cost
            plans[path] = plan
            rendered[path] = measured
            return True

        for path, position in pinned:
            current = plans.get(path, FilePlan())
            if position in current.bodies:
                continue
            try_plan(path, FilePlan(bodies={*current.bodies, position}))

        whole_limit = max(1, int(budget * self.whole_file_share))
        ranked = [path for path in scores if path != focus][:_MAX_CANDIDATES]
        misses = 0
        for path in ranked:
            if remaining <= 0 or misses >= _MAX_MISSES:
                break
            current = plans.get(path, FilePlan())
            if current.whole:
                continue
            whole = measure(path, FilePlan(whole=True))
            if whole is None:
                continue
            if whole[1] <= whole_limit and try_plan(path, FilePlan(whole=True)):
                continue
            if current.skeleton or try_plan(
                path, FilePlan(skeleton=True, bodies=set(current.bodies))
            ):
                misses = 0
            else:
                misses += 1

        recency = {path: order for order, path in enumerate(recently_edited)}
        ordered = sorted(rendered, key=lambda path: (recency.get(path, -1), path))
        files = tuple(ContextFile(path, rendered[path][0]) for path in ordered)
        return files, budget - remaining
