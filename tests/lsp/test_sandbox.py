"""Hostile model output against the edit sandbox (qcn_lsp.sandbox).

A scripted model stands in for the real one: what is tested is what becomes of its output.
Every attack must end in EditRejected naming the file, and nothing outside the workspace, or
outside what the model was shown, may ever reach a WorkspaceEdit.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsprotocol import types
from pygls.workspace import PositionCodec

from qcn_lsp import tool_loop
from qcn_lsp.edits import (
    EditPlan,
    EditRejected,
    EditSupport,
    OpenDocument,
    ProposedChange,
    WorkspaceFiles,
    plan_changes,
)
from qcn_lsp.region_rewrite import Region, apply_region_answer
from qcn_lsp.sandbox import MAX_EDIT_FILES, sandboxed_edit
from qcn_lsp.tool_loop import file_prompt, propose_changes
from tests.lsp.test_model_output import ScriptedBackend, run_for, tool_call

UTF16 = PositionCodec(types.PositionEncodingKind.Utf16)
FULL = EditSupport(document_changes=True, create_files=True, annotations=True)
CHANGES_ONLY = EditSupport(document_changes=False, create_files=False, annotations=False)
A_TEXT = "def add(a, b):\n    return a + b\n"


@pytest.fixture(autouse=True)
def prompt_is_the_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        tool_loop, "_chat_prompt", lambda _backend, messages: copy.deepcopy(list(messages))
    )


@pytest.fixture
def project(add_project: Path) -> Path:
    (add_project.parent / "outside.py").write_text("secret = 1\n")
    (add_project / "escape").symlink_to(add_project.parent)
    (add_project / "link.py").symlink_to(add_project.parent / "outside.py")
    return add_project


async def proposals(
    files: WorkspaceFiles, answer: str, shown: str = "pkg/a.py"
) -> list[ProposedChange]:
    """What one scripted model answer proposes, the model having been shown `shown`."""
    messages = file_prompt("rename add", shown, files.read(shown).text)
    backend = ScriptedBackend([answer])
    return await propose_changes(run_for(backend), files, messages, index=None, max_rounds=1)


def offered(files: WorkspaceFiles, changes: list[ProposedChange], support: EditSupport = FULL):
    return sandboxed_edit(
        files, plan_changes(files, changes), support=support, label="attack", codec=UTF16
    )


def workspace(root: Path, docs: dict[Path, OpenDocument] | None = None) -> WorkspaceFiles:
    docs = docs or {}
    return WorkspaceFiles([root], lambda path: docs.get(path))


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../outside.py", "outside the workspace"),
        ("pkg/../../outside.py", "outside the workspace"),
        ("{parent}/outside.py", "outside the workspace"),
        ("/etc/passwd", "outside the workspace"),
        ("escape/outside.py", "outside the workspace"),
        ("link.py", "outside the workspace"),
        ("file://evil.example{root}/pkg/a.py", "another host"),
        ("file:///etc/passwd", "outside the workspace"),
        ("https://example.com/pkg/a.py", "not a file path"),
        ("pkg/a.py\x00.txt", "not a valid path"),
        ("file://{root}/pkg/a%00.py", "not a valid path"),
        ("pkg/a.py\n", "not a valid path"),
        ("", "not a valid path"),
        ("pkg/b.py", "not among the files the model was shown"),
    ],
)
async def test_edit_targets_outside_what_the_model_may_touch(
    project: Path, path: str, reason: str
) -> None:
    files = workspace(project)
    target = path.format(parent=project.parent, root=project)
    answer = tool_call("edit_file", path=target, old_text="add", new_text="plus")
    with pytest.raises(EditRejected, match=reason):
        offered(files, await proposals(files, answer))


async def test_a_local_file_uri_inside_the_workspace_is_an_ordinary_path(project: Path) -> None:
    files = workspace(project)
    uri = (project / "pkg" / "a.py").as_uri()
    answer = tool_call("edit_file", path=uri, old_text="def add", new_text="def plus")
    edit = offered(files, await proposals(files, answer))
    assert [change.text_document.uri for change in edit.document_changes or []] == [uri]


@pytest.mark.parametrize(
    "path", ["../new.py", "escape/new.py", "/tmp/new.py", "file://host/tmp/new.py"]
)
async def test_created_files_stay_inside_too(project: Path, path: str) -> None:
    files = workspace(project)
    answer = tool_call("create_file", path=path, content="x = 1\n")
    with pytest.raises(EditRejected):
        offered(files, await proposals(files, answer))
    assert not (project.parent / "new.py").exists()


async def test_nul_bytes_and_huge_texts_are_refused(project: Path) -> None:
    files = workspace(project)
    nul = tool_call("edit_file", path="pkg/a.py", old_text="a + b", new_text="a\x00b")
    with pytest.raises(EditRejected, match="NUL"):
        offered(files, await proposals(files, nul))
    huge = tool_call("edit_file", path="pkg/a.py", old_text="a + b", new_text="a" * 2_000_000)
    with pytest.raises(EditRejected, match="more than 1000000"):
        offered(files, await proposals(files, huge))
    many = "".join(
        tool_call("create_file", path=f"gen/m{k}.py", content="x = 1\n")
        for k in range(MAX_EDIT_FILES + 1)
    )
    with pytest.raises(EditRejected, match="files, more than"):
        offered(files, await proposals(files, many))


async def test_overlapping_edits_apply_in_order_and_become_one_text_edit(project: Path) -> None:
    files = workspace(project)
    overlapping = tool_call(
        "edit_file",
        path="pkg/a.py",
        old_text="add(a, b):\n    return a",
        new_text="plus(x, y):\n    return x",
    ) + tool_call("edit_file", path="pkg/a.py", old_text="return x + b", new_text="return x + y")
    edit = offered(files, await proposals(files, overlapping))
    [document] = edit.document_changes or []
    assert isinstance(document, types.TextDocumentEdit)
    [text_edit] = document.edits  # never two edits of one document that could overlap
    before, after = A_TEXT, "def plus(x, y):\n    return x + y\n"
    start = text_edit.range.start
    assert start.line == 0 and before[: start.character] == after[: start.character]
    # The second edit's old_text must match the text after the first one, not the original.
    stale = tool_call("edit_file", path="pkg/a.py", old_text="def add", new_text="def plus")
    with pytest.raises(EditRejected, match="old_text not found"):
        offered(files, await proposals(files, overlapping + stale))


async def test_the_users_newer_text_is_never_overwritten(project: Path) -> None:
    a_path = (project / "pkg" / "a.py").resolve()
    docs = {a_path: OpenDocument(A_TEXT, 3)}
    files = workspace(project, docs)
    answer = tool_call("edit_file", path="pkg/a.py", old_text="a + b", new_text="b + a")
    changes = await proposals(files, answer)
    plan = plan_changes(files, changes)
    # The user types while the model works: both edit shapes refuse the stale proposal.
    docs[a_path] = OpenDocument(A_TEXT + "# mine\n", 4)
    for support in (FULL, CHANGES_ONLY):
        with pytest.raises(EditRejected, match="changed since the model read it"):
            sandboxed_edit(files, plan, support=support, label="x", codec=UTF16)
    # Same text, newer version (an undo back to it): still refused, the version moved on.
    docs[a_path] = OpenDocument(A_TEXT, 5)
    with pytest.raises(EditRejected, match="changed since the model read it"):
        sandboxed_edit(files, plan, support=FULL, label="x", codec=UTF16)


async def test_a_symlink_swapped_in_after_the_read_is_caught(project: Path) -> None:
    files = workspace(project)
    answer = tool_call("edit_file", path="pkg/a.py", old_text="a + b", new_text="b + a")
    plan = plan_changes(files, await proposals(files, answer))
    target = project / "pkg" / "a.py"
    target.unlink()
    target.symlink_to(project.parent / "outside.py")
    with pytest.raises(EditRejected, match="outside the workspace"):
        sandboxed_edit(files, plan, support=FULL, label="x", codec=UTF16)


def test_a_region_rewrite_cannot_reach_outside_its_region(project: Path) -> None:
    files = workspace(project)
    snapshot = files.read("pkg/a.py")
    region = Region(A_TEXT.index("    return"), len(A_TEXT))
    # Through the parser the model only ever replaces the region...
    inside = apply_region_answer("```\n    return b + a\n```", A_TEXT, region, "pkg/a.py")
    sandboxed_edit(
        files,
        EditPlan(
            edited={snapshot.path: (snapshot, inside)},
            regions={snapshot.path: (region.start, region.end)},
        ),
        support=FULL,
        label="x",
        codec=UTF16,
    )
    # ...and a plan that changed the line above it anyway is refused.
    outside = A_TEXT.replace("def add", "def evil")
    forged = EditPlan(
        edited={snapshot.path: (snapshot, outside)},
        regions={snapshot.path: (region.start, region.end)},
    )
    with pytest.raises(EditRejected, match="outside the region"):
        sandboxed_edit(files, forged, support=FULL, label="x", codec=UTF16)


async def test_every_offered_file_is_annotated_for_confirmation(project: Path) -> None:
    files = workspace(project)
    files.read("pkg/b.py")
    answer = (
        tool_call("edit_file", path="pkg/a.py", old_text="def add", new_text="def plus")
        + tool_call("edit_file", path="pkg/b.py", old_text="import add", new_text="import plus")
        + tool_call("create_file", path="pkg/c.py", content="from pkg.a import plus\n")
    )
    edit = offered(files, await proposals(files, answer))
    annotations = edit.change_annotations or {}
    operations = edit.document_changes or []
    assert len(operations) == 4  # two edits, a creation and the new file's text
    for op in operations:
        if isinstance(op, types.CreateFile):
            assert op.annotation_id in annotations
        else:
            assert isinstance(op, types.TextDocumentEdit)
            assert all(getattr(e, "annotation_id", None) in annotations for e in op.edits)
    assert all(annotation.needs_confirmation for annotation in annotations.values())


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.sampled_from(["..", ".", "pkg", "a.py", "escape", "link.py", "/", "//", "~", "\x00"]),
        max_size=6,
    ),
    st.booleans(),
)
def test_any_path_resolves_inside_or_is_refused(
    project: Path, parts: list[str], absolute: bool
) -> None:
    files = workspace(project)
    raw = ("/" if absolute else "") + "/".join(parts)
    try:
        resolved = files.resolve(raw)
    except EditRejected:
        return
    assert resolved.is_relative_to(project.resolve()), (raw, resolved)
