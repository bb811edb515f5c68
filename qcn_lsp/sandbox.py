"""The one place every edit the server proposes passes before it reaches the editor.

Whatever the model wrote, an `EditPlan` becomes a `WorkspaceEdit` only if, at that moment,
- every target resolves (symlinks followed again: a link swapped in since the read counts)
  inside a workspace folder;
- every edited file is one the model was shown, and its open-document version and text (or
  its disk content) are still what the model read: a stale edit is refused, so the user's
  newer text is never overwritten;
- a region rewrite changed nothing outside its region;
- no text holds a NUL byte, no file grows beyond `MAX_EDIT_FILE_BYTES`, no plan touches more
  than `MAX_EDIT_FILES` files, no created file exists already;
- no edited file parses with more syntax errors than before.
The edit then carries a `needsConfirmation` annotation per file where the client supports
annotations (qcn_lsp.edits.to_workspace_edit). The server writes nothing itself: the editor
applies the edit (the audit in qcn_lsp.audit refuses workspace writes from the process).
"""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types
from pygls.workspace import PositionCodec

from qcn_lsp.edits import (
    MAX_EDIT_FILE_BYTES,
    EditPlan,
    EditRejected,
    EditSupport,
    WorkspaceFiles,
    check_syntax,
    to_workspace_edit,
)

MAX_EDIT_FILES = 64


def sandboxed_edit(
    files: WorkspaceFiles,
    plan: EditPlan,
    *,
    support: EditSupport,
    label: str,
    codec: PositionCodec,
) -> types.WorkspaceEdit:
    """The plan as a WorkspaceEdit once every check holds; EditRejected naming the first
    file and reason otherwise."""
    check_plan(files, plan)
    return to_workspace_edit(files, plan, support=support, label=label, codec=codec)


def check_plan(files: WorkspaceFiles, plan: EditPlan) -> None:
    if plan.empty:
        raise EditRejected("the model proposed no change")
    paths = plan.paths()
    if len(paths) > MAX_EDIT_FILES:
        raise EditRejected(
            f"the proposal touches {len(paths)} files, more than {MAX_EDIT_FILES}: ask for less"
        )
    for path in paths:
        _check_target(files, path)
    for path, (snapshot, after) in plan.edited.items():
        name = files.display(path)
        if files.snapshots.get(path) is not snapshot:
            raise EditRejected(f"{name}: not among the files the model was shown")
        files.check_unchanged(snapshot)
        _check_text(name, after)
        region = plan.regions.get(path)
        if region is not None and not _only_inside(snapshot.text, after, region):
            raise EditRejected(f"{name}: the proposed edit reaches outside the region")
    for path, content in plan.created.items():
        name = files.display(path)
        if path.exists() or path.is_symlink():
            raise EditRejected(f"{name}: already exists; use edit_file to change it")
        _check_text(name, content)
    check_syntax(plan, files)


def _check_target(files: WorkspaceFiles, path: Path) -> None:
    name = files.display(path)
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:
        raise EditRejected(f"{name}: cannot be resolved ({exc})") from None
    if resolved != path or not files.inside(resolved):
        raise EditRejected(f"{name}: outside the workspace folders (a link moved since)")


def _check_text(name: str, text: str) -> None:
    if "\x00" in text:
        raise EditRejected(f"{name}: the proposed text holds NUL bytes")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_EDIT_FILE_BYTES:
        raise EditRejected(
            f"{name}: the proposed text is {size} bytes, more than {MAX_EDIT_FILE_BYTES}"
        )


def _only_inside(before: str, after: str, region: tuple[int, int]) -> bool:
    start, end = region
    head, tail = before[:start], before[end:]
    return len(after) >= len(head) + len(tail) and after.startswith(head) and after.endswith(tail)
