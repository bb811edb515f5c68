"""Ranking and cache-stable repo context assembly of context/, and its CLI helpers."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from context.assemble import (
    ContextAssembler,
    ContextFile,
    RepoContext,
    estimate_tokens,
    identifiers_near,
    render_repo_context,
)
from context.cli import run_context, run_index
from context.graph import FileEdges
from context.index import RepoIndex
from context.rank import personalized_pagerank
from engine.formats import repo_context_text

FIXTURE = Path(__file__).parent / "fixtures" / "repos" / "poly"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    target = tmp_path / "poly"
    shutil.copytree(FIXTURE, target)
    return target


@pytest.fixture
def index(workspace: Path) -> RepoIndex:
    built = RepoIndex([workspace])
    built.build()
    return built


def _cursor_at(text: str, needle: str) -> tuple[int, int]:
    offset = text.index(needle)
    line = text.count("\n", 0, offset)
    return line, offset - (text.rfind("\n", 0, offset) + 1)


def test_render_layout() -> None:
    context = RepoContext(3, "demo", (ContextFile("a.py", "x = 1"), ContextFile("b/c.py", "")))
    assert render_repo_context(context) == (
        "<|repo_name|>demo\n<|file_sep|>a.py\nx = 1\n<|file_sep|>b/c.py\n"
    )
    # The engine renders the REPO segment of its prompts the very same way.
    files = [(item.path, item.content) for item in context.files]
    assert render_repo_context(context) == repo_context_text("demo", files)


def test_identifiers_near_cursor_closest_first() -> None:
    text = "alpha = 1\nbeta = alpha\n\ngamma(delta)\n"
    assert identifiers_near(text, 3, 0)[:2] == ["gamma", "delta"]
    assert set(identifiers_near(text, 3, 0)) == {"alpha", "beta", "gamma", "delta"}


def test_pagerank_prefers_files_near_seed() -> None:
    edges = FileEdges(
        paths=("a", "b", "c", "d"),
        sources=(0, 1, 2),
        targets=(1, 2, 3),
        weights=(1.0, 1.0, 1.0),
    )
    ranks = personalized_pagerank(edges, {"a": 1.0})
    assert ranks["a"] > ranks["b"] > ranks["c"] > ranks["d"]
    assert abs(sum(ranks.values()) - 1.0) < 1e-6


@pytest.mark.parametrize(
    ("path", "needle", "definer", "definition_line"),
    [
        ("py/app/service.py", "make_user(name, email)", "py/app/models.py", "def make_user"),
        ("ts/view.tsx", "totalArea([", "ts/shapes.ts", "export function totalArea"),
        ("go/main.go", "Distance(a, b)", "go/geom/geom.go", "func Distance"),
        ("c/main.c", "vec_len(&v)", "c/vec.h", "int vec_len"),
    ],
)
def test_definition_used_at_cursor_is_in_context(
    index: RepoIndex, workspace: Path, path: str, needle: str, definer: str, definition_line: str
) -> None:
    text = (workspace / path).read_text()
    line, col = _cursor_at(text, needle)
    # A tiny budget: only the pinned definitions fit.
    context = ContextAssembler(index).assemble(str(workspace / path), text, line, col, 120)
    by_path = {item.path: item.content for item in context.files}
    assert definer in by_path, by_path.keys()
    assert definition_line in by_path[definer]
    assert path not in by_path  # the current file comes after the repo context


def test_budget_is_respected_and_order_is_deterministic(index: RepoIndex, workspace: Path) -> None:
    path = workspace / "py" / "app" / "service.py"
    text = path.read_text()
    for budget in (60, 200, 1000, 100_000):
        first = ContextAssembler(index).assemble(str(path), text, 8, 10, budget)
        second = ContextAssembler(index).assemble(str(path), text, 8, 10, budget)
        assert first.files == second.files
        assert estimate_tokens(render_repo_context(first)) <= budget
    paths = [item.path for item in first.files]
    assert paths == sorted(paths)
    assert "py/app/models.py" in paths and "py/app/service.py" not in paths


def test_custom_token_counter_is_used(index: RepoIndex, workspace: Path) -> None:
    path = workspace / "py" / "app" / "service.py"

    def count_words(text: str) -> int:
        return len(text.split())

    context = ContextAssembler(index, count_words).assemble(str(path), path.read_text(), 8, 10, 80)
    assert count_words(render_repo_context(context)) <= 80


def test_edited_files_are_rendered_afresh(index: RepoIndex, workspace: Path) -> None:
    """Renderings are cached across assemblers; an edit to a file must show in the next one."""
    path = workspace / "py" / "app" / "service.py"
    text = path.read_text()
    models = workspace / "py" / "app" / "models.py"

    def models_content() -> str:
        context = ContextAssembler(index).assemble(str(path), text, 8, 10, 100_000)
        return {item.path: item.content for item in context.files}["py/app/models.py"]

    assert "EDITED_MARKER" not in models_content()
    models.write_text(models.read_text() + "\nEDITED_MARKER = 1\n")
    index.refresh_file(models)
    assert "EDITED_MARKER = 1" in models_content()
    index.update_document(str(models), models.read_text() + "\nBUFFER_MARKER = 2\n")
    assert "BUFFER_MARKER = 2" in models_content()


def test_skeleton_for_big_files(index: RepoIndex, workspace: Path) -> None:
    big = workspace / "py" / "app" / "big.py"
    functions = [f"def helper_{n}(value):\n    return value + {n}\n" for n in range(150)]
    big.write_text("\n\n".join(functions))
    index.refresh_file(big)
    user = workspace / "py" / "app" / "user.py"
    user_text = "from .big import helper_7\n\nresult = helper_7(1)\n"
    user.write_text(user_text)
    index.refresh_file(user)
    context = ContextAssembler(index).assemble(str(user), user_text, 2, 12, 4000)
    content = {item.path: item.content for item in context.files}["py/app/big.py"]
    assert "return value + 7" in content  # the body of the used definition
    assert "def helper_120(value):" in content  # other signatures only
    assert "return value + 120" not in content
    assert "..." in content


def test_repo_context_stable_while_typing(index: RepoIndex, workspace: Path) -> None:
    path = workspace / "py" / "app" / "service.py"
    text = path.read_text()
    assembler = ContextAssembler(index)
    line, col = _cursor_at(text, "make_user(name, email)")
    first = assembler.assemble(str(path), text, line, col, 500)
    offset = text.index("make_user(name, email)")
    for typed in range(1, 30):
        text = text[:offset] + "x" + text[offset:]
        offset += 1
        index.update_document(str(path), text)
        assert assembler.assemble(str(path), text, line, col + typed, 500) is first
    assert assembler.reranks == 1
    # Saving re-ranks; the same files give back the same context and epoch.
    index.save_document(str(path))
    again = assembler.assemble(str(path), text, line, col, 500)
    assert assembler.reranks == 2
    assert again.epoch == first.epoch
    # A focus change re-ranks and gives a new context.
    other = workspace / "go" / "main.go"
    moved = assembler.assemble(str(other), other.read_text(), 11, 20, 500)
    assert moved.epoch == first.epoch + 1
    assert "go/geom/geom.go" in {item.path for item in moved.files}


def test_large_edit_triggers_rerank(index: RepoIndex, workspace: Path) -> None:
    path = workspace / "py" / "app" / "service.py"
    text = path.read_text()
    assembler = ContextAssembler(index, large_edit_chars=100)
    assembler.assemble(str(path), text, 8, 10, 500)
    pasted = text + "\n" + "# pasted\n" * 30
    assembler.assemble(str(path), pasted, 8, 10, 500)
    assert assembler.reranks == 2


def test_cli_index_and_context(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (workspace / ".git").mkdir()
    out = io.StringIO()
    assert run_index(str(workspace), out=out) == 0
    assert "files: 19" in out.getvalue()
    out = io.StringIO()
    spec = f"{workspace / 'py' / 'app' / 'service.py'}:9:25"
    assert run_context(spec, 300, out) == 0
    rendered = out.getvalue()
    assert rendered.startswith("<|repo_name|>poly\n<|file_sep|>")
    assert "def make_user" in rendered
    assert run_context("no-colon-spec", 300, io.StringIO()) == 2
    assert run_index(str(workspace / "missing"), out=io.StringIO()) == 2
