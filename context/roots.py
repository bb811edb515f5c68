"""Where a file's project starts: the nearest folder above it holding a project marker, the
way the editor plugins pick the workspace folder they open the server with."""

from __future__ import annotations

from pathlib import Path

# The same markers, in the same order, as the Neovim plugin's `root_markers`.
PROJECT_MARKERS = (".git", "pyproject.toml", "package.json", "Cargo.toml", "go.mod")


def find_project_root(file: Path) -> Path | None:
    """The nearest folder above `file` that holds a project marker; None when there is none."""
    for folder in file.resolve().parents:
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return folder
    return None
