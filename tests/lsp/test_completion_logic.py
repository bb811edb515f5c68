"""Completion post-processing, typed-ahead reuse and debounce: pure functions, golden cases."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qcn_lsp.completion_logic import (
    Suggestion,
    TypingRhythm,
    block_end,
    clean_text,
    cut_at_block_end,
    debounce_s,
    inside_word,
    post_process,
    streamed_text,
    trim_suffix_overlap,
    word_start,
)


def test_suffix_overlap_is_trimmed() -> None:
    assert trim_suffix_overlap("foo(a, b))", ")\n") == "foo(a, b)"
    assert trim_suffix_overlap("value]", "]") == "value"
    assert trim_suffix_overlap("x + 1", "\nprint(x)\n") == "x + 1"
    assert trim_suffix_overlap("anything", "") == "anything"


def test_block_end_stops_multi_line_completions() -> None:
    text = "total = 0\n    for x in xs:\n        total += x\nprint(total)\n"
    assert cut_at_block_end(text, "    ") == "total = 0\n    for x in xs:\n        total += x"
    assert cut_at_block_end("a + b", "    return ") == "a + b"


def test_the_block_end_is_known_once_the_closing_line_has_text() -> None:
    text = "total = 0\n    for x in xs:\n        total += x\nprint(total)\n"
    assert block_end(text, "    ") == text.index("print")
    assert block_end("a\n    b\n ", "    ") is None  # a blank line closes nothing yet
    assert block_end("a\n    b\nc", "    ") == len("a\n    b\n")
    assert block_end("a + b", "    return ") is None


CODE_TEXT = st.text(alphabet="ab)(:= \n\t", max_size=14)


@given(
    text=CODE_TEXT,
    line_prefix=st.sampled_from(["", "x = ", "    ", "    return ", "\t", "        y("]),
    suffix=CODE_TEXT,
)
def test_streamed_texts_grow_into_the_final_text(text: str, line_prefix: str, suffix: str) -> None:
    final = post_process(text, line_prefix, suffix)
    for k in range(len(text) + 1):
        assert final.startswith(streamed_text(text[:k], line_prefix, suffix))


# What the random-weight model wrote into VS Code and eglot buffers, with the usual suspects.
MODEL_PIECES = ["a", "b", "(", ")", ":", " ", "\n", "\t", "\r", "\r\n", "\x0f", "\x13", "\x1c"]
MODEL_PIECES += ["\x85", "\u2028", "\u202e", "\x00", "\x7f", "é", "\N{GRINNING FACE}"]
MODEL_TEXT = st.lists(st.sampled_from(MODEL_PIECES), max_size=16).map("".join)


def test_control_characters_never_reach_the_buffer() -> None:
    assert clean_text("a\x0fb\x13c\x1cd\x00e\x7ff\x85g\u2028h\u202ei") == "abcdefghi"
    assert clean_text("x\r\ny\rz\t\n") == "x\nyz\t\n"  # a bare \r goes, \r\n is a line end
    assert post_process("f(a,\x1c b)\r\n    c", "x = ", "") == "f(a, b)\n    c"
    # In a CRLF document the completion's line ends are the document's.
    assert post_process("f(a,\n    b)\r\n    c", "    x = ", "\r\n", "\r\n") == (
        "f(a,\r\n    b)\r\n    c"
    )
    # A CRLF suffix still trims an overlapping ending.
    assert post_process("g()\n)", "x = f(", "\r\n)\r\n", "\r\n") == "g()"


@given(
    text=MODEL_TEXT,
    line_prefix=st.sampled_from(["", "x = ", "    "]),
    suffix=MODEL_TEXT,
    line_end=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_cleaned_texts_still_grow_and_hold_no_control_characters(
    text: str, line_prefix: str, suffix: str, line_end: str
) -> None:
    final = post_process(text, line_prefix, suffix, line_end)
    assert not any(ord(c) < 32 and c not in "\t\n\r" for c in final), repr(final)
    assert "\r" not in final.replace(line_end, "\n")  # no \r but in the document's line ends
    for k in range(len(text) + 1):
        assert final.startswith(streamed_text(text[:k], line_prefix, suffix, line_end))


def test_post_process_empties_whitespace() -> None:
    assert post_process("   \n  ", "x = ", "") == ""


def test_typed_ahead_reuse() -> None:
    suggestion = Suggestion(prefix="x = ", suffix="\n", text="compute(1)", done=True)
    assert suggestion.typed_ahead("x = com", "\n") == "pute(1)"
    assert suggestion.typed_ahead("x = cat", "\n") is None  # typed something else
    assert suggestion.typed_ahead("x = com", "other") is None  # suffix changed
    assert suggestion.typed_ahead("x = compute(1)", "\n") is None  # nothing left


def test_words() -> None:
    assert inside_word("import o", "s")
    assert not inside_word("x = ", "")
    assert not inside_word("f(", ")")
    assert word_start("x = compu") == 4


def test_debounce_adapts_to_typing() -> None:
    rhythm = TypingRhythm()
    assert debounce_s(75, rhythm, "x = ", invoked=True) == 0.0
    assert debounce_s(75, rhythm, "    ", invoked=False) == 0.0  # start of line: at once
    assert debounce_s(75, rhythm, "x = ", invoked=False) == 0.075  # no rhythm yet: base
    for t in (0.0, 0.2, 0.4, 0.6):
        rhythm.record(t)
    assert abs(debounce_s(75, rhythm, "x = ", invoked=False) - 0.2) < 1e-9
    for t in (0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95):
        rhythm.record(t)
    assert debounce_s(75, rhythm, "x = ", invoked=False) == 0.075  # fast typist: floor
    assert debounce_s(0, rhythm, "x = ", invoked=False) == 0.0


def test_a_request_for_a_text_the_document_no_longer_has_gets_no_cursor() -> None:
    """VERSION_AT_ARRIVAL: the request arrived at version 1; by the time its handler ran, an
    undo (version 2) had removed its line. Its position is then for an older text: no cursor
    (an empty answer), never an invalid-position error; a request of the current version is
    still checked."""
    from types import SimpleNamespace

    from lsprotocol import types
    from pygls.exceptions import JsonRpcInvalidParams

    from qcn_lsp.completer import Completer
    from qcn_lsp.text_sync import VERSION_AT_ARRIVAL, LspWorkspace

    workspace = LspWorkspace(None, types.TextDocumentSyncKind.Incremental)
    uri = "file:///w/undone.py"
    workspace.put_text_document(
        types.TextDocumentItem(uri=uri, language_id="python", version=2, text="x = 1\n")
    )
    completer = Completer.__new__(Completer)
    completer.server = SimpleNamespace(workspace=workspace)  # type: ignore[assignment]
    at_end_of_the_removed_line = types.Position(line=1, character=37)
    arrival = VERSION_AT_ARRIVAL.set(1)
    try:
        assert completer.cursor(uri, at_end_of_the_removed_line) is None
    finally:
        VERSION_AT_ARRIVAL.reset(arrival)
    arrival = VERSION_AT_ARRIVAL.set(2)
    try:
        with pytest.raises(JsonRpcInvalidParams):
            completer.cursor(uri, at_end_of_the_removed_line)
    finally:
        VERSION_AT_ARRIVAL.reset(arrival)
