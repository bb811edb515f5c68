"""Ranking and cache-stable repo context assembly of context/, and its CLI helpers."""

from __future__ import annotations

import io
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest

from context.assemble import ContextAssembler, RepoContext
from context.cli import run_index
from context.cost import CharacterCost, ContextCost, RenderedCost
from context.graph import FileEdges
from context.index import RepoIndex
from context.rank import personalized_pagerank
from context.spots import identifiers_near
from qcn_lsp.cli import main as qcn_lsp_main

FIXTURE = Path(__file__).parent.parent / "fixtures" / "repos" / "poly"


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


def _total_cost(context: RepoContext, cost: ContextCost) -> int:
    return cost.header(context.repo_name) + sum(
        cost.file(item.path, item.content) for item in context.files
    )


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
        assert first.tokens == _total_cost(first, CharacterCost()) <= budget
    paths = [item.path for item in first.files]
    assert paths == sorted(paths)
    assert "py/app/models.py" in paths and "py/app/service.py" not in paths


def test_custom_cost_is_used(index: RepoIndex, workspace: Path) -> None:
    """The budget holds in the cost model's tokens, whatever the entries' layout costs."""
    path = workspace / "py" / "app" / "service.py"
    text = path.read_text()

    # One token per character of a layout with its own markers: far dearer than the estimate.
    chars = RenderedCost(len, lambda name: f"<repo {name}>\n", lambda p, c: f"<file {p}>\n{c}\n")
    for budget in (200, 250):
        context = ContextAssembler(index, chars).assemble(str(path), text, 8, 10, budget)
        assert context.files
        assert context.tokens == _total_cost(context, chars) <= budget
        # What the default estimate lets in does not fit: the cost model did count.
        estimated = ContextAssembler(index).assemble(str(path), text, 8, 10, budget)
        assert _total_cost(estimated, chars) > budget


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


def test_cli_index_and_context(
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (workspace / ".git").mkdir()
    out = io.StringIO()
    assert run_index(str(workspace), out=out) == 0
    assert "files: 19" in out.getvalue()
    capsys.readouterr()
    spec = f"{workspace / 'py' / 'app' / 'service.py'}:9:25"
    # `qcn-lsp context` prints the context as the engine's prompt holds it.
    assert qcn_lsp_main(["context", spec, "--budget", "300"]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith("<|repo_name|>poly\n<|file_sep|>")
    assert "def make_user" in printed.out
    assert "tokens (budget 300)" in printed.err
    assert qcn_lsp_main(["context", "no-colon-spec"]) == 2
    assert run_index(str(workspace / "missing"), out=io.StringIO()) == 2


def test_assembly_while_the_index_changes_on_another_thread(
    index: RepoIndex, workspace: Path
) -> None:
    """The server edits the index on its worker thread while the event loop assembles: every
    assembly must see one consistent graph (no errors from tables changing under it)."""
    path = workspace / "py" / "app" / "service.py"
    text = path.read_text()
    line, col = _cursor_at(text, "make_user(name, email)")
    models = workspace / "py" / "app" / "models.py"
    original = models.read_text()
    extra = workspace / "py" / "app" / "extra.py"
    stop = threading.Event()
    errors: list[BaseException] = []

    def edit() -> None:
        try:
            round_ = 0
            while not stop.is_set():
                round_ += 1
                # Definitions and references come and go, files appear and disappear.
                added = "".join(
                    f"\ndef make_user_{n}(x):\n    return make_user(x, x)\n"
                    for n in range(round_ % 7)
                )
                index.update_document(str(models), original + added)
                extra.write_text(f"def make_user(a, b):\n    return {round_}\n")
                index.refresh_file(extra)
                index.remove(extra)
                index.update_document(str(workspace / "py" / f"new_{round_ % 5}.py"), added)
        except BaseException as error:
            errors.append(error)

    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up at once
    editor = threading.Thread(target=edit)
    editor.start()
    try:
        deadline = time.monotonic() + 3.0
        assemblies = 0
        while time.monotonic() < deadline and not errors:
            context = ContextAssembler(index).assemble(str(path), text, line, col, 400)
            assert context.tokens <= 400
            assert len({item.path for item in context.files}) == len(context.files)
            assemblies += 1
    finally:
        stop.set()
        editor.join()
        sys.setswitchinterval(switch_interval)
    assert not errors, errors
    assert assemblies > 10
