"""The repository context stays put while the cursor moves in one file, and re-ranks when the
selection no longer serves or at natural points (save, focus switch, idle, budget)."""

from __future__ import annotations

from pathlib import Path

import pytest

from context.assemble import ContextAssembler, RepoContext
from context.index import RepoIndex

MODULES = 10
BUDGET = 250


def _module(number: int) -> str:
    body = "".join(f"    step_{number}_{row} = x + {row}\n" for row in range(6))
    return f"def func_{number}(x):\n{body}    return x\n\n\nclass Thing{number}:\n    pass\n"


def _main() -> str:
    imports = "".join(f"from .mod_{n} import func_{n}\n" for n in range(MODULES))
    filler = "".join(f"    total = total + {row}\n" for row in range(60))
    return (
        f"{imports}\n\ndef spot_a(value):\n    total = func_0(value) + func_1(value)\n"
        f"    a_typed = 0\n{filler}    return total\n\n\n"
        f"def spot_b(value):\n    total = func_5(value) + func_6(value)\n"
        f"    b_typed = 0\n{filler}    return total\n"
    )


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    package = tmp_path / "proj" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for number in range(MODULES):
        (package / f"mod_{number}.py").write_text(_module(number))
    (package / "main.py").write_text(_main())
    (package / "other.py").write_text("from .mod_9 import func_9\n\nfunc_9(1)\n")
    return tmp_path / "proj"


@pytest.fixture
def index(workspace: Path) -> RepoIndex:
    built = RepoIndex([workspace])
    built.build()
    return built


class Editor:
    """One file edited at several cursors, as an editor sends it to the index."""

    def __init__(self, index: RepoIndex, path: Path, assembler: ContextAssembler) -> None:
        self.index = index
        self.path = path
        self.text = path.read_text()
        self.assembler = assembler
        self.cursors: dict[str, int] = {}
        index.update_document(str(path), self.text)

    def place(self, name: str, after: str) -> None:
        self.cursors[name] = self.text.index(after) + len(after)

    def type(self, name: str, characters: str, budget: int = BUDGET) -> RepoContext:
        context = self.assemble(name, budget)
        for character in characters:
            self.replace(name, 0, character)
            context = self.assemble(name, budget)
        return context

    def replace(self, name: str, removed: int, inserted: str) -> None:
        """Replace ``removed`` characters before cursor ``name`` by ``inserted``."""
        offset = self.cursors[name]
        self.text = self.text[: offset - removed] + inserted + self.text[offset:]
        delta = len(inserted) - removed
        for other, position in self.cursors.items():
            if position >= offset and other != name:
                self.cursors[other] = position + delta
        self.cursors[name] = offset + delta
        self.index.update_document(str(self.path), self.text)

    def assemble(self, name: str, budget: int = BUDGET) -> RepoContext:
        offset = self.cursors[name]
        line = self.text.count("\n", 0, offset)
        col = offset - (self.text.rfind("\n", 0, offset) + 1)
        return self.assembler.assemble(str(self.path), self.text, line, col, budget)


def _shows(context: RepoContext, number: int) -> bool:
    return any(f"step_{number}_5 = x + 5" in item.content for item in context.files)


@pytest.fixture
def editor(index: RepoIndex, workspace: Path) -> Editor:
    editor = Editor(index, workspace / "pkg" / "main.py", ContextAssembler(index))
    editor.place("a", "    a_typed = 0")
    editor.place("b", "    b_typed = 0")
    return editor


@pytest.mark.parametrize("budget", [BUDGET, 120])
def test_two_spots_converge_to_one_selection(editor: Editor, index: RepoIndex, budget: int) -> None:
    # Ranked for one spot at a time, the two spots get different contexts: alternating between
    # them without hysteresis would flip on every keystroke.
    ranked_alone = {}
    for spot in "ab":
        editor.assembler = ContextAssembler(index)
        ranked_alone[spot] = editor.assemble(spot, budget)
    assert ranked_alone["a"].files != ranked_alone["b"].files
    editor.assembler = ContextAssembler(index)
    contexts = [editor.type(spot, "+1", budget) for _ in range(20) for spot in "ab"]
    assert editor.assembler.reranks == 2  # the first cursor, then the first visit to the other
    settled = contexts[1]
    assert all(context is settled for context in contexts[1:])
    if budget == BUDGET:  # room for both spots' definitions
        assert all(_shows(settled, number) for number in (0, 1, 5, 6))
    else:  # room for one spot's: those of the spot it was ranked at
        assert _shows(settled, 5) and not _shows(settled, 0)


def test_typing_undo_and_redo_keep_the_context(editor: Editor) -> None:
    first = editor.type("a", "\n    result = func_1(total) + func_0(total)")
    undone = []
    for _ in range(8):  # undo: the typed text goes away in bursts
        offset = editor.cursors["a"]
        undone.append(editor.text[offset - 5 : offset])
        editor.replace("a", 5, "")
        assert editor.assemble("a") is first
    for chunk in reversed(undone):  # redo: and comes back
        editor.replace("a", 0, chunk)
        assert editor.assemble("a") is first
    assert editor.text.count("func_1(total) + func_0(total)") == 1
    assert editor.assembler.reranks == 1


def test_an_import_edit_at_the_top_keeps_the_context(editor: Editor) -> None:
    first = editor.type("a", "  # note")
    editor.place("top", "from .mod_9 import func_9\n")
    editor.type("top", "from .mod_7 import Thing7\nfrom .mod_8 import (\n    Thing8,\n)\n")
    assert editor.type("a", " more") is first
    assert editor.assembler.reranks == 1


def test_a_really_new_need_reranks(editor: Editor) -> None:
    first = editor.type("a", "\n    extra = ")
    assert not _shows(first, 4)
    assert editor.type("a", "func_4") is first  # a name still being typed needs nothing yet
    moved = editor.type("a", "(")
    assert editor.assembler.reranks == 2
    assert _shows(moved, 4)
    assert all(_shows(moved, number) for number in (0, 1))


def test_save_focus_switch_idle_and_budget_rerank(
    editor: Editor, index: RepoIndex, workspace: Path
) -> None:
    assembler = editor.assembler
    first = editor.type("a", "x")
    index.save_document(str(editor.path))
    assert editor.assemble("a") is first  # re-ranked: the same files, the same context
    assert assembler.reranks == 2
    # A focus switch re-ranks for the other file; coming back brings this file's selection back
    # (the prompt's state for it may still be cached), as long as it serves.
    other = workspace / "pkg" / "other.py"
    elsewhere = assembler.assemble(str(other), other.read_text(), 2, 3, BUDGET)
    assert elsewhere.epoch != first.epoch and _shows(elsewhere, 9)
    assert assembler.reranks == 3
    back = editor.assemble("a")
    assert assembler.reranks == 3 and back is first
    assert assembler.assemble(str(other), other.read_text(), 2, 4, BUDGET) is elsewhere
    # A save since: the file's last selection is ranked again.
    index.save_document(str(other))
    assert editor.assemble("a").files == first.files
    assert assembler.reranks == 4
    # The first visit to the other spot re-ranks for both spots, and back at the first one the
    # context stays; idle() re-ranks for the latest cursor, and so does a new budget.
    editor.type("b", "y")
    editor.type("a", "z")
    assert assembler.reranks == 5
    assert assembler.idle() is not None
    assert assembler.reranks == 6
    editor.assemble("a", budget=BUDGET * 2)
    assert assembler.reranks == 7


def test_idle_before_any_assembly_is_none(index: RepoIndex) -> None:
    assert ContextAssembler(index).idle() is None
