"""Qwen3-Coder prompt formats: repo-level fill-in-the-middle and ChatML chat with tools.

Both render to a `Prompt` whose segments are ordered by stability, so the checkpoint cache
keeps everything up to the first segment that changed:

- FIM: repository context (REPO) -> the current file in chunks cut on a grid of its own offsets
  (FILE_PREFIX) -> the cursor's chunk up to the cursor's line (LOCAL) -> the line up to the
  cursor (LINE) -> `<|fim_suffix|>` + the text after the cursor + `<|fim_middle|>` (TAIL). A
  keystroke changes LINE and TAIL only; moving to another line changes LOCAL too.
- Chat: system prompt and tool descriptions (SYSTEM) -> the conversation (FILE_PREFIX, which
  only grows by appends during a tool loop) -> the assistant header (TAIL).

A GGUF that carries its own chat template (`tokenizer.chat_template`) is rendered with that
template; the project's rendering below is used otherwise (the generated test models carry
none). Both produce the `qwen3_coder` XML tool-call format that `engine.toolcalls` parses.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from engine.errors import EngineError
from engine.segments import Conversation, Prompt, PromptSegment, SegmentKind

FIM_PREFIX = "<|fim_prefix|>"
FIM_SUFFIX = "<|fim_suffix|>"
FIM_MIDDLE = "<|fim_middle|>"
FIM_PAD = "<|fim_pad|>"
REPO_NAME = "<|repo_name|>"
FILE_SEP = "<|file_sep|>"
END_OF_TEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

# Text after which a fill-in-the-middle answer is over: the model moves on to another file,
# another FIM section or ends the document.
FIM_STOPS: tuple[str, ...] = (
    END_OF_TEXT,
    FIM_PAD,
    FILE_SEP,
    REPO_NAME,
    FIM_PREFIX,
    FIM_SUFFIX,
    FIM_MIDDLE,
    IM_END,
)

# The defaults the language server uses (one source of truth for the completer, its settings
# and the benchmarks). CHUNK_CHARS: the grid on which the file before the cursor is cut into
# FILE_PREFIX chunks; a cursor re-tokenizes at most one chunk when it changes line.
# DEFAULT_SUFFIX_CHARS: characters after the cursor; they come after the changing text, so they
# are re-read on every keystroke (the main per-keystroke cost on a CPU).
CHUNK_CHARS = 2_048
DEFAULT_SUFFIX_CHARS = 320


def is_safe_cut(text: str, at: int) -> bool:
    """Does tokenizing text[:at] and text[at:] apart give the tokens of the whole text?

    For byte-level BPE with the Qwen2 pre-tokenizer: yes at a line start whose line is not
    blank. A pre-token ends at a newline unless more newlines follow, blanks between them
    included (the pattern is whitespace then newlines), and BPE never merges across
    pre-tokens. The ends of a text always are.
    """
    if at <= 0 or at >= len(text):
        return True
    if text[at - 1] != "\n":
        return False
    pos = at
    while pos < len(text) and text[pos].isspace():
        if text[pos] in "\r\n":
            return False
        pos += 1
    return True


def cursor_line_start(prefix: str) -> int:
    """Where the cursor's line starts in `prefix` (the LINE segment), at a safe cut."""
    start = prefix.rfind("\n") + 1
    while start > 0 and not is_safe_cut(prefix, start):
        start = prefix.rfind("\n", 0, start - 1) + 1
    return start


def chunk_cuts(text: str, end: int, chunk_chars: int) -> list[int]:
    """Safe cuts of text[:end] on a grid of `chunk_chars` of the text's own offsets: the first
    safe cut at or after each multiple of the grid, before `end`. They depend on the text, never
    on where the cursor is, so two cursors share every chunk before the upper one's."""
    cuts: list[int] = []
    if chunk_chars <= 0:
        return cuts
    anchor = chunk_chars
    while anchor < end:
        newline = text.find("\n", anchor - 1, end)
        while newline >= 0 and not is_safe_cut(text, newline + 1):
            newline = text.find("\n", newline + 1, end)
        if newline < 0 or newline + 1 >= end:
            break
        cuts.append(newline + 1)
        anchor = ((newline + 1) // chunk_chars + 1) * chunk_chars
    return cuts


def prefix_head_cut(prefix: str, max_chars: int | None) -> int:
    """Where to start a file prefix longer than `max_chars` (when the whole file does not fit
    in the context window): on a line start, snapped to a grid of an eighth of the budget so
    the cut, and the checkpoints after it, stay put while the user types."""
    if max_chars is None or len(prefix) <= max_chars:
        return 0
    step = max(1, max_chars // 8)
    anchor = -(-(len(prefix) - max_chars) // step) * step  # round up: stay within budget
    newline = prefix.find("\n", anchor)
    return newline + 1 if 0 <= newline < len(prefix) - 1 else anchor


def clip_suffix(suffix: str, max_chars: int) -> str:
    """The text after the cursor, cut at a line end within `max_chars` (it is re-read on every
    keystroke, so it is kept short)."""
    if len(suffix) <= max_chars:
        return suffix
    cut = suffix.rfind("\n", 0, max_chars)
    return suffix[: cut + 1] if cut >= 0 else suffix[:max_chars]


def repo_header_text(repo_name: str) -> str:
    """The line that opens the repository context."""
    return f"{REPO_NAME}{repo_name}\n"


def repo_file_text(path: str, content: str) -> str:
    """One file of the repository context, exactly as it appears in the prompt (what a cost
    function for ranking files should count)."""
    body = content if content.endswith("\n") or not content else content + "\n"
    return f"{FILE_SEP}{path}\n{body}"


def repo_context_text(repo_name: str, files: Sequence[tuple[str, str]]) -> str:
    """The REPO segment: the header, then each (path, content) file."""
    return repo_header_text(repo_name) + "".join(repo_file_text(p, c) for p, c in files)


def fim_prompt(
    repo_name: str,
    files: Sequence[tuple[str, str]],
    path: str,
    prefix: str,
    suffix: str,
    *,
    chunk_chars: int = CHUNK_CHARS,
    suffix_chars: int = DEFAULT_SUFFIX_CHARS,
    max_prefix_chars: int | None = None,
) -> Prompt:
    """Repo-level FIM for the cursor between `prefix` and `suffix` of the file at `path`.

    `files` are (path, content) pairs of repository context, most stable first. With
    `max_prefix_chars`, only about that much of the file before the cursor is kept.

    Segments: REPO | the file's header (FILE_PREFIX) | the file before the cursor's chunk, one
    FILE_PREFIX segment per chunk (`chunk_cuts`) | the cursor's chunk up to its line (LOCAL) |
    the line up to the cursor (LINE) | TAIL. Every cut is safe (`is_safe_cut`), so the tokens
    are those of the whole text, and nothing before the cursor's chunk depends on the cursor.
    """
    prefix = prefix[prefix_head_cut(prefix, max_prefix_chars) :]
    line = cursor_line_start(prefix)
    bounds = [0, *chunk_cuts(prefix, line, chunk_chars)]
    segments = [
        PromptSegment(repo_context_text(repo_name, files), SegmentKind.REPO),
        PromptSegment(f"{FILE_SEP}{path}\n{FIM_PREFIX}", SegmentKind.FILE_PREFIX),
    ]
    segments += [
        PromptSegment(prefix[start:end], SegmentKind.FILE_PREFIX)
        for start, end in itertools.pairwise(bounds)
    ]
    segments += [
        PromptSegment(prefix[bounds[-1] : line], SegmentKind.LOCAL),
        PromptSegment(prefix[line:], SegmentKind.LINE),
        PromptSegment(
            f"{FIM_SUFFIX}{clip_suffix(suffix, suffix_chars)}{FIM_MIDDLE}", SegmentKind.TAIL
        ),
    ]
    return Prompt(tuple(segments))


# -- chat ----------------------------------------------------------------------------------------

TOOL_CALL_INSTRUCTIONS = """\
To call a function, reply with one or more blocks of exactly this form and nothing after them:

<tool_call>
<function=FUNCTION_NAME>
<parameter=PARAMETER_NAME>
value, which may span several lines
</parameter>
</function>
</tool_call>

Give every required parameter. Reasoning, if any, goes before the first call. When no function
fits, answer in plain text."""


def function_schema(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    """OpenAI-style `{"type": "function", "function": {...}}` or the bare function object."""
    inner = tool.get("function")
    return inner if isinstance(inner, Mapping) else tool


def render_tools(tools: Sequence[Mapping[str, Any]]) -> str:
    """Tool descriptions in the XML layout Qwen3-Coder was trained to read."""
    lines = ["# Tools", "", "You have access to the following functions:", "", "<tools>"]
    for tool in tools:
        function = function_schema(tool)
        parameters = function.get("parameters") or {}
        lines += ["<function>", f"<name>{function.get('name', '')}</name>"]
        if function.get("description"):
            lines.append(f"<description>{function['description']}</description>")
        lines.append("<parameters>")
        for name, schema in (parameters.get("properties") or {}).items():
            lines += ["<parameter>", f"<name>{name}</name>"]
            if "type" in schema:
                lines.append(f"<type>{schema['type']}</type>")
            if schema.get("description"):
                lines.append(f"<description>{schema['description']}</description>")
            lines.append("</parameter>")
        if parameters.get("required"):
            lines.append(f"<required>{json.dumps(list(parameters['required']))}</required>")
        lines += ["</parameters>", "</function>"]
    lines += ["</tools>", "", TOOL_CALL_INSTRUCTIONS]
    return "\n".join(lines)


def _turn(role: str, content: str) -> str:
    return f"{IM_START}{role}\n{content}{IM_END}\n"


def _conversation_turn(message: Mapping[str, str]) -> str:
    role = message.get("role", "user")
    content = message.get("content", "")
    if role == "tool":
        # Tool results travel as a user turn, each wrapped as the model expects.
        return _turn("user", f"<tool_response>\n{content}\n</tool_response>")
    return _turn(role, content)


def chat_prompt(
    messages: Sequence[Mapping[str, str]],
    tools: Sequence[Mapping[str, Any]] = (),
    *,
    chat_template: str | None = None,
) -> Prompt:
    """ChatML prompt ending with the assistant header.

    Roles: system, user, assistant, tool. With `chat_template` (the GGUF's own Jinja
    template) the whole conversation is rendered by it as one stable-first pair of segments.
    The prompt keeps the conversation itself too, for backends that send messages."""
    conversation = Conversation(tuple(dict(m) for m in messages), tuple(dict(t) for t in tools))
    if chat_template:
        prompt = _templated_prompt(messages, tools, chat_template)
        return Prompt(prompt.segments, conversation)
    system = [m.get("content", "") for m in messages if m.get("role") == "system"]
    system_text = "\n\n".join(part for part in system if part)
    if tools:
        system_text = (
            f"{system_text}\n\n{render_tools(tools)}" if system_text else render_tools(tools)
        )
    segments = []
    if system_text:
        segments.append(PromptSegment(_turn("system", system_text), SegmentKind.SYSTEM))
    history = "".join(_conversation_turn(m) for m in messages if m.get("role") != "system")
    segments.append(PromptSegment(history, SegmentKind.FILE_PREFIX))
    segments.append(PromptSegment(f"{IM_START}assistant\n", SegmentKind.TAIL))
    return Prompt(tuple(segments), conversation)


class ChatTemplateError(EngineError):
    """The model's own chat template refused the conversation."""


def _template_error(message: str) -> None:
    raise ChatTemplateError(f"the model's chat template refused the conversation: {message}")


def _templated_prompt(
    messages: Sequence[Mapping[str, str]], tools: Sequence[Mapping[str, Any]], template: str
) -> Prompt:
    # jinja2 comes with llama-cpp-python; sandboxed because the template is model-file data.
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    environment.globals["raise_exception"] = _template_error
    compiled = environment.from_string(template)
    rendered = compiled.render(
        messages=[dict(m) for m in messages],
        tools=[dict(t) for t in tools] or None,
        add_generation_prompt=True,
        bos_token="",
        eos_token=END_OF_TEXT,
    )
    # Everything but the final assistant header is history that later rounds only extend.
    header = f"{IM_START}assistant\n"
    if rendered.endswith(header):
        return Prompt.of(
            (rendered[: -len(header)], SegmentKind.FILE_PREFIX), (header, SegmentKind.TAIL)
        )
    return Prompt.of((rendered, SegmentKind.FILE_PREFIX))
