"""Model-proposed file changes -> one LSP WorkspaceEdit, checked before anything is offered.

The model speaks in `edit_file(path, old_text, new_text)` and `create_file(path, content)`
calls. Every target is resolved (symlinks included) and must lie inside a workspace folder;
`old_text` must match exactly once in the text the model was shown; the content of every
target is remembered when it is read so that a file changed since then is refused rather than
patched blindly. The server never writes to disk: the editor applies the WorkspaceEdit.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import tree_sitter
from lsprotocol import types
from pygls.workspace import PositionCodec

from context.languages import grammar, language_for_path
from context.textdiff import common_affixes
from qcn_lsp.text_sync import line_content, lsp_lines

# Larger files are not offered to the model (nor patched): a whole-file read of a huge or
# binary file is never what an edit instruction is about.
MAX_EDIT_FILE_BYTES = 1_000_000


class EditRejected(ValueError):
    """A proposed change that cannot be offered; the message names the file and the reason."""


@dataclass(frozen=True)
class FileEdit:
    path: str
    old_text: str
    new_text: str


@dataclass(frozen=True)
class FileCreate:
    path: str
    content: str


ProposedChange = FileEdit | FileCreate

EDIT_TOOL_NAMES = ("edit_file", "create_file")


def change_from_tool_call(name: str, arguments: Mapping[str, Any]) -> ProposedChange:
    """An `edit_file` / `create_file` call as a proposed change; wrong arguments are refused."""

    def text_argument(key: str) -> str:
        value = arguments.get(key)
        if not isinstance(value, str):
            raise EditRejected(f"{name}: argument {key!r} missing or not text")
        return value

    if name == "edit_file":
        return FileEdit(text_argument("path"), text_argument("old_text"), text_argument("new_text"))
    if name == "create_file":
        return FileCreate(text_argument("path"), text_argument("content"))
    raise EditRejected(f"{name}: not an edit tool")


@dataclass(frozen=True)
class Snapshot:
    """What the model was shown of one file: open-document version, or disk content."""

    path: Path
    text: str
    version: int | None  # None: not open in the editor, read from disk


@dataclass(frozen=True)
class OpenDocument:
    text: str
    version: int | None


# `scheme://...`: a URL the model wrote where a path belongs (`file:` ones are read as URIs).
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def uri_to_path(uri: str) -> Path:
    """The local path of a `file:` URI; other schemes and other hosts are refused."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise EditRejected(f"{uri}: only file: URIs can be edited")
    if parsed.netloc not in ("", "localhost"):
        raise EditRejected(f"{uri}: a file on another host ({parsed.netloc}); only local files")
    return Path(unquote(parsed.path))


class WorkspaceFiles:
    """Reads workspace files for the model and remembers what it was shown.

    `open_document(path)` returns the editor's current text/version for open files (None
    otherwise); unopened files are read from disk.
    """

    def __init__(
        self,
        roots: Sequence[Path],
        open_document: Callable[[Path], OpenDocument | None],
    ) -> None:
        if not roots:
            raise EditRejected("no workspace folder: open a folder to let qcn-lsp edit files")
        self.roots = tuple(root.resolve() for root in roots)
        self._open_document = open_document
        self.snapshots: dict[Path, Snapshot] = {}

    def resolve(self, raw_path: str) -> Path:
        """`raw_path` (relative to the first root, absolute, or a local `file:` URI) as a real
        path inside a root."""
        if raw_path.startswith("file:"):
            candidate = uri_to_path(raw_path)
        elif _URL.match(raw_path):
            raise EditRejected(f"{raw_path}: not a file path")
        else:
            candidate = Path(raw_path)
        # NUL, newlines and other control characters: never part of a path meant for an edit.
        if not raw_path or any(ord(c) < 0x20 for c in str(candidate)):
            raise EditRejected(f"{raw_path!r}: not a valid path")
        if not candidate.is_absolute():
            candidate = self.roots[0] / candidate
        # resolve() follows symlinks, so a link pointing out of the workspace is caught here.
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
            raise EditRejected(f"{raw_path}: cannot be resolved ({exc})") from None
        if not self.inside(resolved):
            raise EditRejected(f"{raw_path}: outside the workspace folders")
        return resolved

    def inside(self, path: Path) -> bool:
        return any(path.is_relative_to(root) for root in self.roots)

    def display(self, path: Path) -> str:
        for root in self.roots:
            if path.is_relative_to(root):
                return path.relative_to(root).as_posix()
        return str(path)

    def read(self, raw_path: str) -> Snapshot:
        """The current text of a workspace file, remembered as what the model saw."""
        path = self.resolve(raw_path)
        if path in self.snapshots:
            return self.snapshots[path]
        snapshot = self._current(path)
        if snapshot is None:
            raise EditRejected(f"{self.display(path)}: no such file")
        self.snapshots[path] = snapshot
        return snapshot

    def _current(self, path: Path) -> Snapshot | None:
        document = self._open_document(path)
        if document is not None:
            return Snapshot(path, document.text, document.version)
        if not path.is_file():
            return None
        if path.stat().st_size > MAX_EDIT_FILE_BYTES:
            raise EditRejected(f"{self.display(path)}: too large to edit")
        data = path.read_bytes()
        if b"\x00" in data:
            raise EditRejected(f"{self.display(path)}: binary file")
        try:
            return Snapshot(path, data.decode("utf-8"), None)
        except UnicodeDecodeError:
            raise EditRejected(f"{self.display(path)}: not UTF-8 text") from None

    def check_unchanged(self, snapshot: Snapshot) -> None:
        """Refuse a file whose content or version moved on since the model read it."""
        current = self._current(snapshot.path)
        name = self.display(snapshot.path)
        if current is None:
            raise EditRejected(f"{name}: deleted since it was read")
        if current.text != snapshot.text or current.version != snapshot.version:
            raise EditRejected(f"{name}: changed since the model read it; run the action again")


def replace_exactly_once(text: str, old_text: str, new_text: str, name: str) -> str:
    if not old_text:
        raise EditRejected(f"{name}: edit has an empty old_text")
    count = text.count(old_text)
    if count == 0:
        raise EditRejected(f"{name}: old_text not found")
    if count > 1:
        raise EditRejected(f"{name}: old_text matches {count} times; it must match exactly once")
    return text.replace(old_text, new_text, 1)


def changed_span(before: str, after: str) -> tuple[int, int, str]:
    """The smallest (start, end, replacement) in `before` that turns it into `after`."""
    prefix, suffix = common_affixes(before, after)
    return prefix, len(before) - suffix, after[prefix : len(after) - suffix]


def offset_to_position(text: str, offset: int, codec: PositionCodec) -> types.Position:
    """The client position of `offset` in `text`, with LSP's lines (qcn_lsp.text_sync)."""
    lines = lsp_lines(text)
    line_start = 0
    for number, line in enumerate(lines):
        if offset < line_start + len(line):
            column = min(offset - line_start, len(line_content(line)))
            return codec.position_to_client_units(
                lines, types.Position(line=number, character=column)
            )
        line_start += len(line)
    if lines and line_content(lines[-1]) == lines[-1]:  # no line end after the last line
        last = len(lines) - 1
        return codec.position_to_client_units(
            lines, types.Position(line=last, character=len(lines[-1]))
        )
    return types.Position(line=len(lines), character=0)


def _text_edit_for(before: str, after: str, codec: PositionCodec) -> types.TextEdit:
    start, end, replacement = changed_span(before, after)
    # An LSP position cannot lie between the two characters of a `\r\n`: widen the span.
    if 0 < start < len(before) and before[start - 1 : start + 1] == "\r\n":
        start -= 1
        replacement = "\r" + replacement
    if 0 < end < len(before) and before[end - 1 : end + 1] == "\r\n":
        end += 1
        replacement += "\n"
    edit_range = types.Range(
        start=offset_to_position(before, start, codec), end=offset_to_position(before, end, codec)
    )
    return types.TextEdit(range=edit_range, new_text=replacement)


def _annotated(
    edit: types.TextEdit, annotation_id: str | None
) -> types.TextEdit | types.AnnotatedTextEdit:
    if annotation_id is None:
        return edit
    return types.AnnotatedTextEdit(
        range=edit.range, new_text=edit.new_text, annotation_id=annotation_id
    )


@dataclass(frozen=True)
class EditSupport:
    """What the client's `workspace.workspaceEdit` capabilities allow."""

    document_changes: bool
    create_files: bool
    annotations: bool

    @classmethod
    def of(cls, capabilities: types.ClientCapabilities) -> EditSupport:
        workspace = capabilities.workspace
        edit = workspace.workspace_edit if workspace else None
        if edit is None or not edit.document_changes:
            return cls(document_changes=False, create_files=False, annotations=False)
        return cls(
            document_changes=True,
            create_files=types.ResourceOperationKind.Create in (edit.resource_operations or []),
            annotations=edit.change_annotation_support is not None,
        )


@dataclass
class EditPlan:
    """The checked outcome of a set of proposed changes, per file, before LSP conversion."""

    edited: dict[Path, tuple[Snapshot, str]] = field(default_factory=dict)
    created: dict[Path, str] = field(default_factory=dict)
    # Where a file may change, as (start, end) offsets into the text read (region rewrites).
    regions: dict[Path, tuple[int, int]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.edited and not self.created

    def paths(self) -> list[Path]:
        return sorted({*self.edited, *self.created})


def plan_changes(files: WorkspaceFiles, changes: Iterable[ProposedChange]) -> EditPlan:
    """Apply proposed changes to in-memory copies, in order; raise EditRejected on any problem.

    Edits to one file apply one after the other, as the model saw them: the second edit's
    old_text is searched in the text after the first.
    """
    plan = EditPlan()
    for change in changes:
        path = files.resolve(change.path)
        name = files.display(path)
        if isinstance(change, FileCreate):
            if path in plan.created or path in plan.edited or path.exists():
                raise EditRejected(f"{name}: already exists; use edit_file to change it")
            plan.created[path] = change.content
            continue
        if path in plan.created:
            plan.created[path] = replace_exactly_once(
                plan.created[path], change.old_text, change.new_text, name
            )
            continue
        if path in plan.edited:
            snapshot, text = plan.edited[path]
        elif path in files.snapshots:
            snapshot = files.snapshots[path]
            text = snapshot.text
        else:
            # Only what the model read can be patched: old_text must match what it saw.
            raise EditRejected(f"{name}: not among the files the model was shown")
        plan.edited[path] = (
            snapshot,
            replace_exactly_once(text, change.old_text, change.new_text, name),
        )
    for path, (snapshot, after) in list(plan.edited.items()):
        if after == snapshot.text:
            del plan.edited[path]
    return plan


def to_workspace_edit(
    files: WorkspaceFiles,
    plan: EditPlan,
    *,
    support: EditSupport,
    label: str,
    codec: PositionCodec,
) -> types.WorkspaceEdit:
    """One WorkspaceEdit for the plan, in the shape the client supports (the checks come
    first, in qcn_lsp.sandbox).

    With `documentChanges`: versioned TextDocumentEdits, CreateFile operations and one
    ChangeAnnotation per file marked needsConfirmation (the editor shows a preview) where the
    client supports annotations. Without: the plain `changes` map, which carries no versions
    (the sandbox compared every target with what the model read just before). One minimal
    TextEdit per file: edits of one document never overlap.
    """
    if plan.empty:
        raise EditRejected("the model proposed no change")
    if plan.created and not support.create_files:
        names = ", ".join(files.display(path) for path in sorted(plan.created))
        raise EditRejected(f"{names}: this editor cannot create files through LSP edits")
    if not support.document_changes:
        changes = {
            path.as_uri(): [_text_edit_for(snapshot.text, after, codec)]
            for path, (snapshot, after) in sorted(plan.edited.items())
        }
        return types.WorkspaceEdit(changes=changes)

    annotations: dict[str, types.ChangeAnnotation] = {}
    operations: list[types.TextDocumentEdit | types.CreateFile] = []
    for path in plan.paths():
        name = files.display(path)
        annotation_id = f"qcn:{name}" if support.annotations else None
        if annotation_id is not None:
            annotations[annotation_id] = types.ChangeAnnotation(
                label=label, needs_confirmation=True, description=name
            )
        if path in plan.created:
            operations.append(
                types.CreateFile(
                    uri=path.as_uri(),
                    options=types.CreateFileOptions(overwrite=False, ignore_if_exists=False),
                    annotation_id=annotation_id,
                )
            )
            before, after, version = "", plan.created[path], None
            if not after:
                continue
        else:
            snapshot, after = plan.edited[path]
            before, version = snapshot.text, snapshot.version
        operations.append(
            types.TextDocumentEdit(
                text_document=types.OptionalVersionedTextDocumentIdentifier(
                    uri=path.as_uri(), version=version
                ),
                edits=[_annotated(_text_edit_for(before, after, codec), annotation_id)],
            )
        )
    return types.WorkspaceEdit(document_changes=operations, change_annotations=annotations or None)


@functools.cache
def _parser(language_name: str) -> tree_sitter.Parser:
    return tree_sitter.Parser(grammar(language_name).language)


def syntax_error_count(path: Path, text: str) -> int | None:
    """ERROR and MISSING nodes in `text` parsed by the grammar for `path`; None: no grammar."""
    language_name = language_for_path(str(path))
    if language_name is None:
        return None
    tree = _parser(language_name).parse(text.encode("utf-8"))
    count = 0
    pending = [tree.root_node]
    while pending:
        node = pending.pop()
        if node.is_error or node.is_missing:
            count += 1
        # Only subtrees that contain an error are worth descending into.
        pending.extend(child for child in node.children if child.has_error or child.is_missing)
    return count


def check_syntax(plan: EditPlan, files: WorkspaceFiles) -> None:
    """Refuse a plan whose result parses with more syntax errors than the text before it."""
    for path, (snapshot, after) in plan.edited.items():
        before_errors = syntax_error_count(path, snapshot.text)
        after_errors = syntax_error_count(path, after)
        if before_errors is not None and after_errors is not None and after_errors > before_errors:
            raise EditRejected(
                f"{files.display(path)}: the proposed edit does not parse "
                f"({after_errors - before_errors} new syntax errors)"
            )
    for path, content in plan.created.items():
        if syntax_error_count(path, content):
            raise EditRejected(f"{files.display(path)}: the proposed new file does not parse")
