"""Cache-stable repository context for a cursor.

The assembled context becomes the ``REPO`` segment of the prompt, the most expensive part to
prefill: when it changes, everything after it is read again. So a selection, once ranked, stays
while it still serves the cursor, and is re-ranked only

- at natural points: a change of budget, a save, ``idle()``, or a focus file whose last
  selection no longer serves (the last selection of each focus file is remembered, so going
  back to a file brings its context back, and with it the prompt's cached state);
- when the cursor needs what it does not hold: the definitions that a ranking would pin for the
  identifiers near the cursor are missing, weighted by closeness as the ranking weighs them
  (1 for the nearest identifier, 1/2 for the next...), by ``rerank_gain`` or more in all. The
  identifier being typed and import lines do not count (a half-typed name, or a new import,
  needs nothing yet). A definition the last ranking tried but could not fit counts as held if
  it was wanted then at least ``SPOT_DECAY`` times as much as now: two spots whose needs do not
  fit together keep the selection ranked at either, instead of taking turns.

Ranking seeds from the spots of the focus file the cursor visited lately (``CursorSpots``), the
latest most, so going back and forth between two places converges to one selection serving
both. Within a context, files come in a stable order: files not edited in this session first (by
path), recently edited ones last. The caller renders it: the assembler knows the cost of each
entry (a ``ContextCost``), not the prompt's layout.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from context.cost import CharacterCost, ContextCost
from context.graph import SymbolGraph
from context.index import RepoIndex, SourceFingerprint
from context.rank import personalized_pagerank
from context.render import FilePlan, RenderCache
from context.spots import SPOT_DECAY, CursorSpots, Spot, identifiers_near, import_rows

# Names with definitions in more files than this are too ambiguous to pin.
_MAX_PINNED_DEFINING_FILES = 6
_MAX_PINNED_NAMES = 16  # per spot
_MAX_CANDIDATES = 300
# Once this many candidates in a row did not fit, the budget is as good as full: rendering and
# counting the remaining low-ranked files took most of an assembly on a large repository.
_MAX_MISSES = 24
_MAX_SPOT_FILES = 32
_MAX_FOCUS_FILES = 16  # focus files whose last selection is remembered


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


# How much a definition shown in the selection is wanted, as far as hysteresis goes.
_SHOWN = float("inf")


@dataclass(frozen=True, slots=True)
class _Ranking:
    """What the current selection was ranked for, and the definitions it settled: (file,
    name) -> how much it was wanted when tried and not fitting, or ``_SHOWN``."""

    focus: str
    budget: int
    saves: int
    settled: dict[tuple[str, str], float]
    # Each selected file's RepoIndex.source_fingerprint when it was read: a held selection
    # whose files changed (edited, deleted or renamed, in a buffer or on disk) is re-ranked.
    sources: tuple[tuple[str, SourceFingerprint], ...] = ()


@dataclass(frozen=True, slots=True)
class _Wanted:
    """A name near a spot whose definitions may be pinned."""

    rank: int  # position among the identifiers near the spot
    name: str
    defining: frozenset[str]  # files defining it, the focus file left out
    targets: tuple[str, ...]  # the ones to pin: files the focus file imports first, two at most


def _wanted(
    graph: SymbolGraph, focus: str, imported: frozenset[str], near: list[str]
) -> Iterator[_Wanted]:
    for rank, name in enumerate(near):
        defining = graph.defining_files(name) - {focus}
        if defining and len(defining) <= _MAX_PINNED_DEFINING_FILES:
            targets = sorted(defining, key=lambda path: (path not in imported, path))[:2]
            yield _Wanted(rank, name, defining, tuple(targets))


_render_cache = RenderCache()


class ContextAssembler:
    def __init__(
        self,
        index: RepoIndex,
        cost: ContextCost | None = None,
        *,
        rerank_gain: float = 0.25,
        whole_file_share: float = 0.25,
    ) -> None:
        self.index = index
        self.cost = cost if cost is not None else CharacterCost()
        self.rerank_gain = rerank_gain
        self.whole_file_share = whole_file_share
        self._last: RepoContext | None = None
        self._ranking: _Ranking | None = None
        # The last selection of each focus file, most recent last.
        self._by_focus: OrderedDict[str, tuple[_Ranking, RepoContext]] = OrderedDict()
        self._spots: OrderedDict[str, CursorSpots] = OrderedDict()
        # The latest assembly's focus key, text and budget, for idle().
        self._latest: tuple[str, str, int] | None = None
        self._epoch = 0
        self.reranks = 0

    def assemble(
        self, path: str, text: str, line: int, col: int, budget_tokens: int
    ) -> RepoContext:
        """Repository context for a cursor at (line, col), both 0-based, in ``path``."""
        key = self.index.key(path)
        spots = self._spots.get(key)
        if spots is None:
            spots = self._spots[key] = CursorSpots()
            while len(self._spots) > _MAX_SPOT_FILES:
                self._spots.popitem(last=False)
        self._spots.move_to_end(key)
        spots.visit(line, col)
        self._latest = (key, text, budget_tokens)
        self._recall(key)
        with self.index.reading() as graph:
            if self._last is not None and self._serves(graph, key, text, line, col, budget_tokens):
                return self._last
            return self._rank(graph, key, text, budget_tokens, spots)

    def idle(self) -> RepoContext | None:
        """The user paused: re-rank now for the latest cursor, so that a changed context can be
        prefilled before the next keystroke. None before the first assembly."""
        if self._latest is None:
            return None
        key, text, budget = self._latest
        with self.index.reading() as graph:
            return self._rank(graph, key, text, budget, self._spots[key])

    def _recall(self, focus: str) -> None:
        """Make the focus file's last selection the current one (if it has one)."""
        if self._ranking is not None and self._ranking.focus == focus:
            return
        recalled = self._by_focus.get(focus)
        if recalled is not None:
            self._ranking, self._last = recalled

    def _serves(
        self, graph: SymbolGraph, focus: str, text: str, line: int, col: int, budget: int
    ) -> bool:
        ranking = self._ranking
        if (
            ranking is None
            or ranking.focus != focus
            or ranking.budget != budget
            or ranking.saves != self.index.saves
            or any(self.index.source_fingerprint(p) != seen for p, seen in ranking.sources)
        ):
            return False
        near = identifiers_near(
            text, line, col, skip_rows=import_rows(graph.files.get(focus), line), skip_typed=True
        )
        missing = 0.0
        for count, wanted in enumerate(_wanted(graph, focus, graph.imports(focus), near)):
            if count >= _MAX_PINNED_NAMES:
                break
            closeness = 1.0 / (1 + wanted.rank)
            held = min(ranking.settled.get((t, wanted.name), 0.0) for t in wanted.targets)
            if held < closeness * SPOT_DECAY:
                missing += closeness
        return missing < self.rerank_gain

    def _rank(
        self, graph: SymbolGraph, focus: str, text: str, budget: int, spots: CursorSpots
    ) -> RepoContext:
        self.reranks += 1
        saves = self.index.saves
        files, tokens, settled, sources = self._select(graph, focus, text, budget, spots.weighted())
        self._ranking = _Ranking(focus, budget, saves, settled, sources)
        if self._last is None or self._last.files != files:
            self._epoch += 1
            self._last = RepoContext(self._epoch, self.index.repo_name, files, tokens)
        self._by_focus[focus] = (self._ranking, self._last)
        self._by_focus.move_to_end(focus)
        while len(self._by_focus) > _MAX_FOCUS_FILES:
            self._by_focus.popitem(last=False)
        return self._last

    def _select(
        self,
        graph: SymbolGraph,
        focus: str,
        text: str,
        budget: int,
        spots: list[tuple[Spot, float]],
    ) -> tuple[
        tuple[ContextFile, ...],
        int,
        dict[tuple[str, str], float],
        tuple[tuple[str, SourceFingerprint], ...],
    ]:
        imported = graph.imports(focus)
        seeds: dict[str, float] = {focus: 1.0}
        for target in imported:
            seeds[target] = seeds.get(target, 0.0) + 0.3
        pinned: list[tuple[str, str, float]] = []  # (file, name, closeness), most wanted first
        for spot, weight in spots:
            near = identifiers_near(text, spot.line, spot.col)
            for count, wanted in enumerate(_wanted(graph, focus, imported, near)):
                closeness = weight / (1 + wanted.rank)
                for target in wanted.defining:
                    seeds[target] = seeds.get(target, 0.0) + closeness / len(wanted.defining)
                if count < _MAX_PINNED_NAMES:
                    pinned.extend((target, wanted.name, closeness) for target in wanted.targets)
        recently_edited = tuple(self.index.recently_edited)
        for recent in recently_edited:
            if recent != focus:
                seeds[recent] = seeds.get(recent, 0.0) + 0.2
        scores = personalized_pagerank(graph.file_edges(), seeds, limit=_MAX_CANDIDATES + 1)

        remaining = budget - self.cost.header(self.index.repo_name)
        plans: dict[str, FilePlan] = {}
        rendered: dict[str, tuple[str, int]] = {}
        texts: dict[str, str] = {}
        settled: dict[tuple[str, str], float] = {}

        fingerprints: dict[str, SourceFingerprint] = {}

        def measure(path: str, plan: FilePlan) -> tuple[str, int] | None:
            if path not in texts:
                # Before the read: a change between the two re-ranks the next keystroke.
                fingerprints[path] = self.index.source_fingerprint(path)
                content = self.index.read_text(path)
                if content is None:
                    return None
                texts[path] = content
            tags = graph.files.get(path)
            if tags is None:
                return None
            return _render_cache.measure(path, texts[path], tags.definitions, plan, self.cost)

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

        for path, name, closeness in pinned:
            if (path, name) in settled:  # tried already: the budget only shrank since
                settled[path, name] = max(settled[path, name], closeness)
                continue
            shown = True
            for position, definition in enumerate(graph.files[path].definitions):
                current = plans.get(path, FilePlan())
                if definition.name == name and position not in current.bodies:
                    shown = try_plan(path, FilePlan(bodies={*current.bodies, position})) and shown
            settled[path, name] = _SHOWN if shown else closeness

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
                settled.update(((path, d.name), _SHOWN) for d in graph.files[path].definitions)
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
        return files, budget - remaining, settled, tuple((p, fingerprints[p]) for p in ordered)
