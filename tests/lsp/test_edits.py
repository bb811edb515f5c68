"""Model-proposed changes -> WorkspaceEdit: path checks, matching, staleness, both shapes."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.workspace import PositionCodec

from qcn_lsp.edits import (
    EditRejected,
    EditSupport,
    FileCreate,
    FileEdit,
    OpenDocument,
    WorkspaceFiles,
    change_from_tool_call,
    check_syntax,
    plan_changes,
    to_workspace_edit,
    uri_to_path,
)
from qcn_lsp.sandbox import sandboxed_edit

UTF16 = PositionCodec(types.PositionEncodingKind.Utf16)
FULL_SUPPORT = EditSupport(document_changes=True, create_files=True, annotations=True)
CHANGES_ONLY = EditSupport(document_changes=False, create_files=False, annotations=False)


@pytest.fixture
def project(add_project: Path) -> Path:
    (add_project.parent / "secret.txt").write_text("outside\n")
    return add_project


def files_for(root: Path, open_docs: dict[Path, OpenDocument] | None = None) -> WorkspaceFiles:
    """The workspace's files, every text file under `root` shown to the model."""
    docs = open_docs or {}
    files = WorkspaceFiles([root], lambda path: docs.get(path))
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with contextlib.suppress(EditRejected):
                files.read(str(path))
    return files


def edit_for(files: WorkspaceFiles, changes: list, *, document_changes: bool = True):
    plan = plan_changes(files, changes)
    return sandboxed_edit(
        files,
        plan,
        support=FULL_SUPPORT if document_changes else CHANGES_ONLY,
        label="rename add",
        codec=UTF16,
    )


@pytest.mark.parametrize(
    "bad_path",
    ["../secret.txt", "pkg/../../secret.txt", "/etc/passwd", "", "a\x00b"],
)
def test_paths_outside_the_workspace_are_refused(project: Path, bad_path: str) -> None:
    with pytest.raises(EditRejected):
        plan_changes(files_for(project), [FileEdit(bad_path, "outside", "x")])


def test_symlink_out_of_the_workspace_is_refused(project: Path) -> None:
    (project / "link.txt").symlink_to(project.parent / "secret.txt")
    with pytest.raises(EditRejected, match=r"link.txt: outside the workspace"):
        plan_changes(files_for(project), [FileEdit("link.txt", "outside", "x")])
    (project / "linkdir").symlink_to(project.parent)
    with pytest.raises(EditRejected, match=r"outside the workspace"):
        plan_changes(files_for(project), [FileCreate("linkdir/new.py", "x = 1\n")])


def test_absolute_path_inside_the_workspace_is_accepted(project: Path) -> None:
    target = project / "pkg" / "a.py"
    plan = plan_changes(files_for(project), [FileEdit(str(target), "a + b", "b + a")])
    assert plan.edited[target.resolve()][1] == "def add(a, b):\n    return b + a\n"


def test_old_text_must_match_exactly_once(project: Path) -> None:
    files = files_for(project)
    with pytest.raises(EditRejected, match=r"pkg/a.py: old_text not found"):
        plan_changes(files, [FileEdit("pkg/a.py", "a - b", "x")])
    with pytest.raises(EditRejected, match=r"pkg/a.py: old_text matches 2 times"):
        plan_changes(files, [FileEdit("pkg/a.py", "a +", "x"), FileEdit("pkg/a.py", "b", "x")])
    with pytest.raises(EditRejected, match=r"empty old_text"):
        plan_changes(files, [FileEdit("pkg/a.py", "", "x")])


def test_sequential_edits_to_one_file_become_one_minimal_text_edit(project: Path) -> None:
    files = files_for(project)
    edit = edit_for(
        files,
        [FileEdit("pkg/a.py", "return a + b", "return a+b"), FileEdit("pkg/a.py", "a+b", "b + a")],
    )
    assert edit.document_changes is not None
    [doc_edit] = edit.document_changes
    assert isinstance(doc_edit, types.TextDocumentEdit)
    assert doc_edit.text_document.version is None  # not open: checked against disk instead
    [text_edit] = doc_edit.edits
    assert isinstance(text_edit, types.AnnotatedTextEdit)
    assert text_edit.range == types.Range(
        start=types.Position(line=1, character=11), end=types.Position(line=1, character=16)
    )
    assert text_edit.new_text == "b + a"


def test_multi_file_edit_is_annotated_versioned_and_creates_files(project: Path) -> None:
    a_path = (project / "pkg" / "a.py").resolve()
    open_docs = {a_path: OpenDocument("def add(a, b):\n    return a + b\n", 7)}
    files = files_for(project, open_docs)
    edit = edit_for(
        files,
        [
            FileEdit("pkg/a.py", "def add(", "def plus("),
            FileEdit("pkg/b.py", "import add\n\nprint(add(", "import plus\n\nprint(plus("),
            FileCreate("pkg/c.py", "from pkg.a import plus\n"),
        ],
    )
    assert edit.changes is None
    assert edit.change_annotations is not None
    assert set(edit.change_annotations) == {"qcn:pkg/a.py", "qcn:pkg/b.py", "qcn:pkg/c.py"}
    assert all(a.needs_confirmation for a in edit.change_annotations.values())
    kinds = [type(op).__name__ for op in edit.document_changes or []]
    assert kinds == ["TextDocumentEdit", "TextDocumentEdit", "CreateFile", "TextDocumentEdit"]
    first = edit.document_changes[0]
    assert isinstance(first, types.TextDocumentEdit)
    assert first.text_document.version == 7
    assert all(isinstance(e, types.AnnotatedTextEdit) for e in first.edits)


def test_changes_shape_refuses_stale_open_documents(project: Path) -> None:
    a_path = (project / "pkg" / "a.py").resolve()
    open_docs = {a_path: OpenDocument("def add(a, b):\n    return a + b\n", 1)}
    files = files_for(project, open_docs)
    plan = plan_changes(files, [FileEdit("pkg/a.py", "a + b", "b + a")])
    open_docs[a_path] = OpenDocument("def add(a, b):\n    return a + b  # typed\n", 2)
    with pytest.raises(EditRejected, match=r"pkg/a.py: changed since the model read it"):
        sandboxed_edit(files, plan, support=CHANGES_ONLY, label="x", codec=UTF16)


def test_unopened_file_changed_on_disk_is_refused(project: Path) -> None:
    files = files_for(project)
    plan = plan_changes(files, [FileEdit("pkg/b.py", "print(add(1, 2))", "print(add(2, 1))")])
    (project / "pkg" / "b.py").write_text("from pkg.a import add\n\nprint(add(3, 4))\n")
    with pytest.raises(EditRejected, match=r"pkg/b.py: changed since the model read it"):
        sandboxed_edit(files, plan, support=FULL_SUPPORT, label="x", codec=UTF16)


def test_changes_shape_has_no_versions_and_cannot_create(project: Path) -> None:
    files = files_for(project)
    edit = edit_for(files, [FileEdit("pkg/a.py", "a + b", "b + a")], document_changes=False)
    assert edit.document_changes is None
    assert edit.changes is not None
    assert list(edit.changes) == [(project / "pkg" / "a.py").resolve().as_uri()]
    with pytest.raises(EditRejected, match=r"pkg/new.py: this editor cannot create files"):
        edit_for(files, [FileCreate("pkg/new.py", "x = 1\n")], document_changes=False)


def test_no_annotations_for_clients_without_annotation_support(project: Path) -> None:
    files = files_for(project)
    plan = plan_changes(files, [FileEdit("pkg/a.py", "a + b", "b + a")])
    support = EditSupport(document_changes=True, create_files=False, annotations=False)
    edit = to_workspace_edit(files, plan, support=support, label="x", codec=UTF16)
    assert edit.change_annotations is None
    doc_edit = (edit.document_changes or [])[0]
    assert isinstance(doc_edit, types.TextDocumentEdit)
    assert type(doc_edit.edits[0]) is types.TextEdit


def test_creating_an_existing_file_is_refused(project: Path) -> None:
    with pytest.raises(EditRejected, match=r"pkg/a.py: already exists"):
        plan_changes(files_for(project), [FileCreate("pkg/a.py", "x = 1\n")])


def test_binary_and_missing_files_are_refused(project: Path) -> None:
    (project / "blob.bin").write_bytes(b"\x00\x01abc")
    files = files_for(project)
    with pytest.raises(EditRejected, match=r"blob.bin: binary file"):
        files.read("blob.bin")
    with pytest.raises(EditRejected, match=r"nope.py: no such file"):
        files.read("nope.py")


def test_edit_that_breaks_the_syntax_is_refused(project: Path) -> None:
    files = files_for(project)
    plan = plan_changes(files, [FileEdit("pkg/a.py", "return a + b", "return (a + b")])
    with pytest.raises(EditRejected, match=r"pkg/a.py: the proposed edit does not parse"):
        check_syntax(plan, files)
    check_syntax(plan_changes(files, [FileEdit("pkg/a.py", "a + b", "(a + b)")]), files)


def test_utf16_positions_after_astral_characters(project: Path) -> None:
    (project / "emoji.py").write_text('s = "😀"; t = 1\n')
    edit = edit_for(files_for(project), [FileEdit("emoji.py", "t = 1", "t = 2")])
    doc_edit = (edit.document_changes or [])[0]
    assert isinstance(doc_edit, types.TextDocumentEdit)
    # 😀 is two UTF-16 code units: Python index 13 is UTF-16 column 14.
    assert doc_edit.edits[0].range.start.character == 14


def test_tool_call_arguments_are_checked() -> None:
    assert change_from_tool_call("edit_file", {"path": "a", "old_text": "x", "new_text": ""}) == (
        FileEdit("a", "x", "")
    )
    with pytest.raises(EditRejected, match=r"'old_text' missing"):
        change_from_tool_call("edit_file", {"path": "a", "new_text": "y"})
    with pytest.raises(EditRejected, match=r"not an edit tool"):
        change_from_tool_call("delete_everything", {})


def test_non_file_uris_are_refused() -> None:
    with pytest.raises(EditRejected, match=r"only file: URIs"):
        uri_to_path("untitled:Untitled-1")
    assert uri_to_path("file:///tmp/a%20b.py") == Path("/tmp/a b.py")
