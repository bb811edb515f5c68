"""The layer rules, read from the source with `ast`: what may import what, and no cycles.

Every import counts, also those inside functions, except those under `if TYPE_CHECKING:`
(annotations only) for the cycle check. A feature module may import no other feature module
even for annotations.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("qcn_lsp", "engine", "context", "bench", "scripts")
FEATURES = "qcn_lsp.features"
COMPOSITION_POINT = "qcn_lsp.app"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, under_type_checking: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every import statement, and whether it sits under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, under_type_checking
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from _imports(ast.Module(body=[child], type_ignores=[]), True)
            for child in node.orelse:
                yield from _imports(ast.Module(body=[child], type_ignores=[]), under_type_checking)
        else:
            yield from _imports(node, under_type_checking)


def _targets(node: ast.AST, importer: str) -> Iterator[str]:
    """The in-repository modules an import statement loads (the most specific that exists)."""
    modules = _modules()
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        assert isinstance(node, ast.ImportFrom)
        base = node.module or ""
        if node.level:
            package = importer.split(".")
            if _modules()[importer].name != "__init__.py":
                package = package[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, base] if base else package)
        names = [f"{base}.{alias.name}" for alias in node.names]
        names = [name if name in modules else base for name in names]
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            yield name


@cache
def _edges() -> tuple[tuple[str, str, bool], ...]:
    """(importer, imported, annotations only) for every import between repository modules."""
    edges = []
    for name, path in _modules().items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, type_checking in _imports(tree):
            edges += [(name, target, type_checking) for target in _targets(node, name)]
    return tuple(edges)


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _violations(importers: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{a} imports {b}"
        for a, b, _ in _edges()
        if _in(a, importers) and any(_in(b, package) for package in forbidden)
    ]


def test_the_scan_sees_the_imports() -> None:
    edges = {(a, b) for a, b, _ in _edges()}
    assert (COMPOSITION_POINT, f"{FEATURES}.popup_completion") in edges
    assert ("qcn_lsp.services", "engine.backend") in edges
    assert ("context.index", "context.graph") in edges


def test_engine_knows_nothing_of_context_or_the_server() -> None:
    assert _violations("engine", ("context", "qcn_lsp")) == []


def test_context_knows_nothing_of_the_engine_or_the_server() -> None:
    assert _violations("context", ("engine", "qcn_lsp")) == []


def test_features_do_not_import_each_other() -> None:
    features = [m for m in _modules() if _in(m, FEATURES) and m != FEATURES]
    assert len(features) > 3
    assert [
        f"{a} imports {b}" for a, b, _ in _edges() if a in features and b in features and a != b
    ] == []


def test_only_the_composition_point_imports_features() -> None:
    assert [
        f"{a} imports {b}"
        for a, b, _ in _edges()
        if _in(b, FEATURES) and not _in(a, FEATURES) and a != COMPOSITION_POINT
    ] == []


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {name: set() for name in _modules()}
    for a, b, type_checking in _edges():
        if not type_checking and a != b:
            graph[a].add(b)
    cycles = [sorted(component) for component in _strongly_connected(graph) if len(component) > 1]
    assert cycles == []


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components
