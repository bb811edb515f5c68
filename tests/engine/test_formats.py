"""Qwen3-Coder prompt formats and the qwen3_coder tool-call parser (no model needed)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.formats import (
    DEFAULT_SUFFIX_CHARS,
    FILE_SEP,
    FIM_MIDDLE,
    FIM_PREFIX,
    FIM_SUFFIX,
    LOCAL_WINDOW_CHARS,
    REPO_NAME,
    ChatTemplateError,
    chat_prompt,
    clip_suffix,
    fim_prompt,
    local_window_start,
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
        "proj", [("a.py", "A = 1"), ("b.py", "B = 2\n")], "c.py", "x = ", "\nprint(x)\n"
    )
    assert prompt.text == (
        f"{REPO_NAME}proj\n{FILE_SEP}a.py\nA = 1\n{FILE_SEP}b.py\nB = 2\n"
        f"{FILE_SEP}c.py\n{FIM_PREFIX}x = {FIM_SUFFIX}\nprint(x)\n{FIM_MIDDLE}"
    )
    kinds = [segment.kind for segment in prompt.segments]
    assert kinds == [SegmentKind.REPO, SegmentKind.FILE_PREFIX, SegmentKind.LOCAL, SegmentKind.TAIL]


def test_repo_context_is_the_header_then_each_file_entry() -> None:
    assert repo_header_text("proj") == f"{REPO_NAME}proj\n"
    assert repo_file_text("a.py", "A = 1") == f"{FILE_SEP}a.py\nA = 1\n"
    assert repo_file_text("b.py", "B = 2\n") == f"{FILE_SEP}b.py\nB = 2\n"
    assert repo_file_text("e.py", "") == f"{FILE_SEP}e.py\n"
    files = [("a.py", "A = 1"), ("b.py", "B = 2\n"), ("e.py", "")]
    assert repo_context_text("proj", files) == repo_header_text("proj") + "".join(
        repo_file_text(path, content) for path, content in files
    )


def test_fim_defaults_are_the_servers_window_and_suffix() -> None:
    prefix = "".join(f"line {i}\n" for i in range(2000))
    suffix = "".join(f"row {i}\n" for i in range(2000))
    prompt = fim_prompt("r", [], "a.py", prefix, suffix)
    local = prompt.segments[2].text
    assert local == prefix[local_window_start(prefix, LOCAL_WINDOW_CHARS) :]
    assert (
        prompt.segments[3].text
        == f"{FIM_SUFFIX}{clip_suffix(suffix, DEFAULT_SUFFIX_CHARS)}{FIM_MIDDLE}"
    )


def test_local_window_boundary_stays_put_while_typing() -> None:
    prefix = "".join(f"line {i}\n" for i in range(500))
    starts = {local_window_start(prefix + "y" * typed, 600) for typed in range(100)}
    assert len(starts) == 1
    start = starts.pop()
    assert prefix[start - 1] == "\n" and len(prefix) - start >= 600


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
        head = prompt.segments[1].text
        cuts.add(head[len(f"{FILE_SEP}a.py\n{FIM_PREFIX}") :][:40])
        assert len(prompt.segments[1].text) + len(prompt.segments[2].text) <= 20_100
    assert len(cuts) == 1
