"""The server's copy of a document follows LSP's line ends (`\\r\\n`, `\\r`, `\\n`) only.

A reference model written here, independent of the server's code, applies random edits
the way an editor does (UTF-16 columns; form feeds, U+2028, U+001C, NEL and friends are
ordinary characters); the server must hold the same text (`qcn.status` shows its sha256), and
positions it sends back (edit ranges, completion items, code action regions) must point where
the editor's would.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsprotocol import types
from pygls.workspace import PositionCodec

from qcn_lsp.edits import (
    EditPlan,
    EditSupport,
    OpenDocument,
    Snapshot,
    WorkspaceFiles,
    to_workspace_edit,
)
from qcn_lsp.region_rewrite import region_for
from qcn_lsp.text_sync import LspPositionCodec, LspTextDocument, lsp_lines
from tests.lsp.helpers import (
    RawLspProcess,
    lsp_session,
    open_document,
    popup_params,
    until_ready,
)

# Characters str.splitlines breaks at although LSP does not, LSP's own line ends, an astral
# character (two UTF-16 units) and plain text.
ODD_BREAKS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
PIECES = [*ODD_BREAKS, "\r\n", "\r", "\n", "\N{GRINNING FACE}", "é", "a", "b", " ", "x = 1"]
texts = st.lists(st.sampled_from(PIECES), max_size=14).map("".join)


# -- the reference: an editor's view of the text --------------------------------------------


def reference_lines(text: str) -> list[str]:
    """Line contents, cut at LSP line ends only."""
    return re.split(r"\r\n|\r|\n", text)


def utf16_units(text: str) -> int:
    return sum(2 if ord(char) > 0xFFFF else 1 for char in text)


def reference_offset(text: str, line: int, character: int) -> int:
    """Where an editor puts (line, UTF-16 character): clamped to the line, then the text."""
    starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]
    if line >= len(starts):
        return len(text)
    content = reference_lines(text)[line]
    units = 0
    for index, char in enumerate(content):
        if units >= character:
            return starts[line] + index
        units += utf16_units(char)
    return starts[line] + len(content)


def reference_position(text: str, offset: int) -> types.Position:
    before = text[:offset]
    line_starts = [m.end() for m in re.finditer(r"\r\n|\r|\n", before)]
    start = line_starts[-1] if line_starts else 0
    return types.Position(line=len(line_starts), character=utf16_units(text[start:offset]))


@dataclass(frozen=True)
class Edit:
    start: types.Position
    end: types.Position
    text: str

    def apply(self, text: str) -> str:
        start = reference_offset(text, self.start.line, self.start.character)
        end = reference_offset(text, self.end.line, self.end.character)
        return text[:start] + self.text + text[max(start, end) :]


@st.composite
def positions(draw: st.DrawFn, text: str) -> types.Position:
    lines = reference_lines(text)
    line = draw(st.integers(0, len(lines) - 1))
    content = lines[line]
    index = draw(st.integers(0, len(content)))
    character = utf16_units(content[:index])
    if draw(st.integers(0, 9)) == 0:
        character += draw(st.integers(1, 3))  # beyond the line: the editor means its end
    return types.Position(line=line, character=character)


@st.composite
def edit_traces(draw: st.DrawFn) -> tuple[str, list[Edit]]:
    initial = draw(texts)
    text, edits = initial, []
    for _ in range(draw(st.integers(1, 8))):
        a, b = draw(positions(text)), draw(positions(text))
        start, end = sorted([a, b], key=lambda p: (p.line, p.character))
        edit = Edit(start, end, draw(texts))
        edits.append(edit)
        text = edit.apply(text)
    return initial, edits


def replay(initial: str, edits: list[Edit]) -> Iterator[str]:
    text = initial
    for edit in edits:
        text = edit.apply(text)
        yield text


# -- the server's document, in process ------------------------------------------------------


def test_lines_break_only_at_lsp_line_ends() -> None:
    text = "a\x0cb\u2028c\x1cd\r\ne\rf\n\x85g\n"
    assert lsp_lines(text) == ("a\x0cb\u2028c\x1cd\r\n", "e\r", "f\n", "\x85g\n")
    assert lsp_lines("") == ()
    assert lsp_lines("\r\r\n\n") == ("\r", "\r\n", "\n")
    document = LspTextDocument("file:///t.py", text)
    assert document.lines == lsp_lines(text)
    # Characters beyond the end of a line mean its end, never the line end or the next line.
    assert document.offset_at_position(types.Position(line=1, character=9)) == text.index("\rf")
    assert document.offset_at_position(types.Position(line=9, character=0)) == len(text)


@settings(max_examples=300, deadline=None)
@given(edit_traces())
def test_incremental_changes_match_the_editor(trace: tuple[str, list[Edit]]) -> None:
    initial, edits = trace
    document = LspTextDocument(
        "file:///t.py", initial, position_codec=LspPositionCodec(types.PositionEncodingKind.Utf16)
    )
    for edit, expected in zip(edits, replay(initial, edits), strict=True):
        document.apply_change(
            types.TextDocumentContentChangePartial(
                range=types.Range(start=edit.start, end=edit.end), text=edit.text
            )
        )
        assert document.source == expected, (edit, expected)


@settings(max_examples=200, deadline=None)
@given(texts.flatmap(lambda before: st.tuples(st.just(before), texts)))
def test_edit_ranges_point_where_the_editor_applies_them(pair: tuple[str, str]) -> None:
    """The WorkspaceEdit built from a before/after pair turns the editor's text into after."""
    before, after = pair
    if before == after:
        return
    path = Path("/w/m.txt")
    files = WorkspaceFiles([Path("/w")], lambda p: OpenDocument(before, None))
    plan = EditPlan(edited={path: (Snapshot(path, before, None), after)})
    edit = to_workspace_edit(
        files,
        plan,
        support=EditSupport(document_changes=False, create_files=False, annotations=False),
        label="t",
        codec=PositionCodec(types.PositionEncodingKind.Utf16),
    )
    assert edit.changes is not None
    [text_edit] = edit.changes[path.as_uri()]
    start, end = text_edit.range.start, text_edit.range.end
    assert Edit(start, end, text_edit.new_text).apply(before) == after
    # Both ends are positions an editor can express: on a line, never inside a line end.
    for position in (start, end):
        offset = reference_offset(before, position.line, position.character)
        assert reference_position(before, offset) == position


def test_a_code_action_region_after_a_form_feed_is_the_selected_line() -> None:
    text = "import os\n\x0c\ndef f():\n    return 1\n\u2028# note\rx = 2\n"
    document = LspTextDocument("file:///t.py", text)
    line = types.Position(line=3, character=4)
    region = region_for(document, types.Range(start=line, end=line))
    assert text[region.start : region.end] == "    return 1\n"
    lone_cr = types.Position(line=5, character=0)
    region = region_for(document, types.Range(start=lone_cr, end=lone_cr))
    assert text[region.start : region.end] == "x = 2\n"


# -- the real server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[RawLspProcess]:
    process = RawLspProcess()
    process.initialize()
    yield process
    process.close()


def server_copy(server: RawLspProcess, uri: str) -> dict[str, object]:
    response = server.request(
        "workspace/executeCommand", {"command": "qcn.status", "arguments": []}
    )
    documents = response["result"]["documents"]
    assert isinstance(documents, dict)
    return documents[uri]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(trace=edit_traces())
def test_the_servers_copy_follows_random_edits(
    server: RawLspProcess, trace: tuple[str, list[Edit]]
) -> None:
    initial, edits = trace
    uri = f"file:///random/{sha256(json.dumps([initial, repr(edits)]))[:16]}.py"
    server.open_document(uri, initial)
    text = initial
    for version, edit in enumerate(edits, start=2):
        text = edit.apply(text)
        server.send(
            {
                "method": "textDocument/didChange",
                "params": {
                    "textDocument": {"uri": uri, "version": version},
                    "contentChanges": [
                        {
                            "range": {
                                "start": {
                                    "line": edit.start.line,
                                    "character": edit.start.character,
                                },
                                "end": {"line": edit.end.line, "character": edit.end.character},
                            },
                            "text": edit.text,
                        }
                    ],
                },
            }
        )
    copy = server_copy(server, uri)
    server.send({"method": "textDocument/didClose", "params": {"textDocument": {"uri": uri}}})
    assert copy == {"version": len(edits) + 1, "chars": len(text), "sha256": sha256(text)}, (
        initial,
        edits,
        text,
    )


async def test_completions_after_odd_characters_and_lone_cr(
    tiny_model: Path, tmp_path: Path
) -> None:
    """A popup completion's range on a line after a form feed, U+2028 and a lone `\\r`; with
    str.splitlines these cursors were "beyond the end of line" (-32602)."""
    settings = {
        "model": {"path": str(tiny_model), "contextLength": 2048},
        "completion": {"maxTokens": 4, "debounceMs": 0, "timeoutMs": 120_000},
        "cache": {"dir": str(tmp_path / "cache")},
    }
    # VS Code's capabilities: UTF-16 columns, as the reference counts them.
    async with lsp_session(initialization_options=settings) as (client, _):
        await until_ready(client)
        for number, separator in enumerate(["\x0c\n", "\u2028", "\x1c", "\r", "\r\n"]):
            uri = (tmp_path / f"odd{number}.py").as_uri()
            text = f"import os{separator}value = os.pa"
            open_document(client, uri, text)
            line = 1 if separator in ("\x0c\n", "\r", "\r\n") else 0
            cursor = types.Position(line=line, character=utf16_units(reference_lines(text)[line]))
            answer = await client.text_document_completion_async(popup_params(uri, cursor))
            assert isinstance(answer, types.CompletionList)
            for item in answer.items:
                assert isinstance(item.text_edit, types.TextEdit)
                # The edit replaces the word being typed, `pa`, on the cursor's line.
                start = types.Position(line=line, character=cursor.character - 2)
                assert item.text_edit.range == types.Range(start=start, end=cursor)
                assert item.text_edit.new_text.startswith("pa")


def test_percent_encoded_uris_name_the_open_document(server: RawLspProcess) -> None:
    """VS Code percent-encodes URIs (`a%20b.py`); pygls keys documents by the decoded one."""
    uri = "file:///work%20space/a%20b.py"
    text = "def f():\n    return 1\n"
    server.open_document(uri, text)
    selection = {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 4}}
    actions = server.request(
        "textDocument/codeAction",
        {"textDocument": {"uri": uri}, "range": selection, "context": {"diagnostics": []}},
    )["result"]
    assert [action["title"] for action in actions] == ["Qwen: rewrite selection"]
    assert server_copy(server, "file:///work space/a b.py")["sha256"] == sha256(text)
    server.send({"method": "textDocument/didClose", "params": {"textDocument": {"uri": uri}}})
