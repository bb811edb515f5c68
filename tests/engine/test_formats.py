"""Qwen3-Coder prompt formats and the qwen3_coder tool-call parser (no model needed)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.formats import (
    CHUNK_CHARS,
    DEFAULT_SUFFIX_CHARS,
    FILE_SEP,
    FIM_MIDDLE,
    FIM_PREFIX,
    FIM_SUFFIX,
    REPO_NAME,
    ChatTemplateError,
    chat_prompt,
    chunk_cuts,
    clip_suffix,
    cursor_line_start,
    fim_prompt,
    is_safe_cut,
    repo_context_text,
    repo_file_text,
    repo_header_text,
)
from engine.segments import SegmentKind
from engine.toolcalls import ToolCall, ToolCallError, parse_tool_calls, render_tool_call

TOOLS = (
    {
        "type": "function",
        "function": {
            "name": "edit_file",
            "description": "Replace text",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "old_text": {"type": "string"},
                    "new_text": {"type": "string"},
                    "count": {"type": "integer"},
                },
                "required": ["path", "old_text", "new_text"],
            },
        },
    },
)


def test_fim_prompt_is_qwen_repo_level_layout() -> None:
    prompt = fim_prompt(
        "proj", [("a.py", "A = 1"), ("b.py", "B = 2\n")], "c.py", "y = 2\nx = ", "\nprint(x)\n"
    )
    assert prompt.text == (
        f"{REPO_NAME}proj\n{FILE_SEP}a.py\nA = 1\n{FILE_SEP}b.py\nB = 2\n"
        f"{FILE_SEP}c.py\n{FIM_PREFIX}y = 2\nx = {FIM_SUFFIX}\nprint(x)\n{FIM_MIDDLE}"
    )
    K = SegmentKind
    assert [(s.kind, s.text) for s in prompt.segments[1:]] == [
        (K.FILE_PREFIX, f"{FILE_SEP}c.py\n{FIM_PREFIX}"),
        (K.LOCAL, "y = 2\n"),
        (K.LINE, "x = "),
        (K.TAIL, f"{FIM_SUFFIX}\nprint(x)\n{FIM_MIDDLE}"),
    ]
    assert prompt.before(K.LINE).text == prompt.text.split("x = ")[0]
    assert prompt.before(K.TAIL).text == prompt.text.split(FIM_SUFFIX)[0]


def _file(lines: int) -> str:
    return "".join(f"def f{i}(a):\n    return a + {i}\n\n" for i in range(lines))


def test_the_file_before_the_cursor_is_cut_on_a_grid_that_the_cursor_does_not_move() -> None:
    text = _file(400)
    prompts = [fim_prompt("r", [], "a.py", text[:at], text[at:]) for at in (6_000, 9_000, 14_000)]
    chunks = [[s.text for s in p.segments if s.kind == SegmentKind.FILE_PREFIX] for p in prompts]
    # every chunk of the upper cursor but its own (LOCAL) is a chunk of the lower ones
    assert chunks[0] == chunks[1][: len(chunks[0])] == chunks[2][: len(chunks[0])]
    assert chunks[1] == chunks[2][: len(chunks[1])]
    for prompt, at in zip(prompts, (6_000, 9_000, 14_000), strict=True):
        segments = prompt.segments
        file_text = "".join(s.text for s in segments[2:-1])
        assert file_text == text[:at]
        assert segments[-2].kind == SegmentKind.LINE and "\n" not in segments[-2].text
        assert all(len(s.text) < 2 * CHUNK_CHARS for s in segments[2:-2])


@given(st.text(alphabet="ab \t\n\r", max_size=80), st.integers(1, 12), st.integers(0, 80))
def test_chunk_cuts_are_safe_increasing_and_before_the_end(text: str, grid: int, end: int) -> None:
    end = min(end, len(text))
    cuts = chunk_cuts(text, end, grid)
    assert cuts == sorted(set(cuts)) and all(0 < c < end for c in cuts)
    assert all(is_safe_cut(text, c) for c in cuts)
    line = cursor_line_start(text)
    assert is_safe_cut(text, line) and (line == 0 or text[line - 1] == "\n")
    assert line == 0 or "\n" not in text[line:] or "\r" in text[line:]


def test_safe_cuts_are_line_starts_of_lines_that_are_not_blank() -> None:
    assert is_safe_cut("x\ny", 2) and is_safe_cut("x\n  y", 2)
    assert not is_safe_cut("x\n\ny", 2) and not is_safe_cut("x\n  \ny", 2)
    assert not is_safe_cut("xy", 1) and is_safe_cut("xy", 0) and is_safe_cut("xy", 2)
    assert is_safe_cut("x\n  ", 2)  # blanks up to the end of the text


def test_repo_context_is_the_header_then_each_file_entry() -> None:
    assert repo_header_text("proj") == f"{REPO_NAME}proj\n"
    assert repo_file_text("a.py", "A = 1") == f"{FILE_SEP}a.py\nA = 1\n"
    assert repo_file_text("b.py", "B = 2\n") == f"{FILE_SEP}b.py\nB = 2\n"
    assert repo_file_text("e.py", "") == f"{FILE_SEP}e.py\n"
    files = [("a.py", "A = 1"), ("b.py", "B = 2\n"), ("e.py", "")]
    assert repo_context_text("proj", files) == repo_header_text("proj") + "".join(
        repo_file_text(path, content) for path, content in files
    )


def test_fim_defaults_are_the_servers_suffix() -> None:
    prefix = "".join(f"line {i}\n" for i in range(2000))
    suffix = "".join(f"row {i}\n" for i in range(2000))
    prompt = fim_prompt("r", [], "a.py", prefix, suffix)
    assert (
        prompt.segments[-1].text
        == f"{FIM_SUFFIX}{clip_suffix(suffix, DEFAULT_SUFFIX_CHARS)}{FIM_MIDDLE}"
    )


def test_suffix_is_clipped_at_a_line_end() -> None:
    suffix = "".join(f"row {i}\n" for i in range(1000))
    clipped = clip_suffix(suffix, 100)
    assert len(clipped) <= 100 and clipped.endswith("\n") and suffix.startswith(clipped)


def test_chat_prompt_puts_tools_in_a_stable_system_segment() -> None:
    messages = [
        {"role": "system", "content": "Be careful."},
        {"role": "user", "content": "Rename f to g."},
    ]
    first = chat_prompt(messages, TOOLS)
    assert first.segments[0].kind is SegmentKind.SYSTEM
    assert "<name>edit_file</name>" in first.segments[0].text
    assert first.text.endswith("<|im_start|>assistant\n")
    later = chat_prompt(
        [*messages, {"role": "assistant", "content": "ok"}, {"role": "tool", "content": "done"}],
        TOOLS,
    )
    # A later round extends the earlier one: the cache keeps everything before the header.
    assert later.text.startswith(first.text[: -len("<|im_start|>assistant\n")])
    assert "<tool_response>\ndone\n</tool_response>" in later.text


def test_chat_prompt_uses_the_models_own_template() -> None:
    template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    prompt = chat_prompt([{"role": "user", "content": "hi"}], chat_template=template)
    assert prompt.text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    with pytest.raises(ChatTemplateError, match="no tools"):
        chat_prompt(
            [{"role": "user", "content": "hi"}],
            chat_template="{{ raise_exception('no tools') }}",
        )


def test_parses_calls_with_verbatim_multiline_values() -> None:
    reply = (
        "I will rename it.\n<tool_call>\n<function=edit_file>\n<parameter=path>\nsrc/a.py\n"
        "</parameter>\n<parameter=old_text>\ndef f():\n\n    return 1\n</parameter>\n"
        "<parameter=new_text>\ndef g():\n    return 1\n</parameter>\n<parameter=count>\n2\n"
        "</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=read_file>\n"
        "<parameter=path>\nb.py\n</parameter>\n</function>\n</tool_call>"
    )
    calls = parse_tool_calls(reply)
    assert calls[0] == ToolCall(
        "edit_file",
        {
            "path": "src/a.py",
            "old_text": "def f():\n\n    return 1",
            "new_text": "def g():\n    return 1",
            "count": "2",
        },
    )
    assert calls[1] == ToolCall("read_file", {"path": "b.py"})
    with pytest.raises(ToolCallError, match="unknown function 'read_file'"):
        parse_tool_calls(reply, TOOLS)
    typed = parse_tool_calls(reply.split("<tool_call>\n<function=read_file>")[0], TOOLS)
    assert typed[0].arguments["count"] == 2


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("<tool_call>\n<function=edit_file>\n<parameter=path>\na", "not closed"),
        ("<tool_call>\n<function=edit_file>\n", "missing </function>"),
        ("<tool_call>\n<function=edit_file>\n</function>", "is not closed"),
        ("<tool_call>\nhello\n</tool_call>", "without a <function=NAME>"),
        ("<tool_call>\n<function=a b>\n</function>\n</tool_call>", "invalid function name"),
        ("<tool_call><function=f><parameter=p>1</parameter>junk</function></tool_call>", "stray"),
        (
            "<tool_call><function=f><parameter=p>1</parameter><parameter=p>2</parameter>"
            "</function></tool_call>",
            "given twice",
        ),
        ("done.</tool_call>", "without its <tool_call>"),
        ("<tool_call><tool_call><function=f></function></tool_call>", "without a <function"),
    ],
)
def test_malformed_calls_are_errors_that_say_why(reply: str, message: str) -> None:
    with pytest.raises(ToolCallError, match=message):
        parse_tool_calls(reply)


def test_values_may_contain_the_closing_tags_of_the_format() -> None:
    value = "s = '</function></tool_call>'"
    call = ToolCall("edit_file", {"new_text": value})
    assert parse_tool_calls(render_tool_call(call)) == [call]


def test_plain_answers_and_unwrapped_functions() -> None:
    assert parse_tool_calls("No changes are needed.") == []
    assert parse_tool_calls(
        "<function=read_file>\n<parameter=path>\nx\n</parameter>\n</function>"
    ) == [ToolCall("read_file", {"path": "x"})]


values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40).filter(
    lambda v: "</parameter>" not in v
)


@given(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), values, max_size=4))
def test_render_then_parse_round_trips(arguments: dict[str, str]) -> None:
    call = ToolCall("edit_file", arguments)
    assert parse_tool_calls("thinking...\n" + render_tool_call(call)) == [call]


@given(st.text(max_size=200))
def test_parser_never_crashes(text: str) -> None:
    with contextlib.suppress(ToolCallError):
        parse_tool_calls(text)


def test_an_over_long_file_is_cut_at_a_point_that_typing_does_not_move() -> None:
    prefix = "".join(f"line {i} = {i}\n" for i in range(5000))
    cuts = set()
    for typed in range(0, 400, 7):
        prompt = fim_prompt("r", [], "a.py", prefix + "x" * typed, "", max_prefix_chars=20_000)
        cuts.add(prompt.segments[2].text[:40])
        assert sum(len(s.text) for s in prompt.segments[1:-1]) <= 20_100
    assert len(cuts) == 1
