"""`qcn-lsp index` and `qcn-lsp context` as a user runs them: checked input, the workspace found
the way the editors find it, output that says what it counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.tools import one_line_error, run_cli


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project (a `.git` at its root) whose file in a sub-folder uses one of another."""
    root = tmp_path / "proj"
    (root / ".git").mkdir(parents=True)
    (root / "lib").mkdir()
    (root / "lib" / "shapes.py").write_text("def area_of_square(side):\n    return side * side\n")
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text(
        "from lib.shapes import area_of_square\n\nprint(area_of_square(3))\n"
    )
    (root / "notes.txt").write_text("plain words\n")
    return root


def test_context_uses_the_nearest_project_root(project: Path, tmp_path: Path) -> None:
    result = run_cli("context", f"{project / 'src' / 'app.py'}:3:7", XDG_CACHE_HOME=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "lib/shapes.py" in result.stdout  # from outside the file's own folder
    assert f"workspace {project}:" in result.stderr


def test_context_rejects_cursors_outside_the_file(project: Path, tmp_path: Path) -> None:
    app = project / "src" / "app.py"
    cache = str(tmp_path / "cache")
    one_line_error(run_cli("context", f"{app}:99999:1", XDG_CACHE_HOME=cache), "last line is 4")
    one_line_error(run_cli("context", f"{app}:0:0", XDG_CACHE_HOME=cache), "1-based")
    one_line_error(
        run_cli("context", f"{app}:1:99", XDG_CACHE_HOME=cache), "column 99", "37 characters"
    )
    one_line_error(run_cli("context", f"{app}:1", XDG_CACHE_HOME=cache), "FILE:LINE:COL")
    one_line_error(run_cli("context", f"{app}x:1:1", XDG_CACHE_HOME=cache), "cannot read")
    # The end of a line, and the empty line after the last line break, are cursors.
    assert run_cli("context", f"{app}:1:38", XDG_CACHE_HOME=cache).returncode == 0
    assert run_cli("context", f"{app}:4:1", XDG_CACHE_HOME=cache).returncode == 0


def test_context_rejects_binary_files(project: Path, tmp_path: Path) -> None:
    blob = project / "src" / "blob.py"
    blob.write_bytes(b"\x00\x01\x02binary")
    one_line_error(run_cli("context", f"{blob}:1:1"), "not a text file")
    latin = project / "src" / "latin.py"
    latin.write_bytes("caf\xe9 = 1\n".encode("latin-1"))
    one_line_error(run_cli("context", f"{latin}:1:1"), "not UTF-8")


def test_context_outside_a_project_asks_for_the_root(tmp_path: Path) -> None:
    """A file with no project marker above it: no indexing of whatever folder holds it."""
    loose = tmp_path / "etc" / "hostname"
    loose.parent.mkdir()
    loose.write_text("box\n")
    line = one_line_error(run_cli("context", f"{loose}:1:1"), "no project folder", "--root")
    assert ".git" in line
    ok = run_cli("context", f"{loose}:1:1", "--root", str(loose.parent))
    assert ok.returncode == 0, ok.stderr
    one_line_error(
        run_cli("context", f"{loose}:1:1", "--root", str(tmp_path / "elsewhere")), "not a folder"
    )


def test_context_help_says_the_defaults() -> None:
    text = run_cli("context", "--help").stdout
    assert "1-based" in text
    assert "default: 4096" in text
    assert ".git" in text and "--root" in text


def test_index_explains_its_counts_and_draws_no_bar_into_a_pipe(
    project: Path, tmp_path: Path
) -> None:
    result = run_cli("index", str(project), XDG_CACHE_HOME=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "files: 3" in result.stdout
    assert "plain text (no grammar, no symbols): 1" in result.stdout
    assert "\r" not in result.stderr and "indexing [" not in result.stderr
    text = run_cli("index", "--help").stdout
    assert "edges" not in text and "languages and time" not in text
    assert "plain text" in text and "python" in text
    one_line_error(run_cli("index", str(project / "nope")), "no such folder")
    one_line_error(run_cli("index", str(project / "notes.txt")), "not a folder")
