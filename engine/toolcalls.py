"""Parser of Qwen3-Coder's XML tool calls (the `qwen3_coder` format).

    <tool_call>
    <function=edit_file>
    <parameter=path>
    src/app.py
    </parameter>
    ...
    </function>
    </tool_call>

Parameter values are raw text: one newline after the opening tag and one before the closing
tag belong to the layout, everything between is the value, verbatim (code keeps its
indentation and blank lines). With the tool schemas at hand, values of non-string parameters
are read as JSON. Anything malformed raises ToolCallError naming what is wrong; a reply with
no tool call at all is an empty list, not an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.formats import function_schema

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
FUNCTION_CLOSE = "</function>"
PARAMETER_CLOSE = "</parameter>"

_FUNCTION_OPEN = re.compile(r"<function=([^>\n]*)>")
_PARAMETER_OPEN = re.compile(r"<parameter=([^>\n]*)>")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


class ToolCallError(ValueError):
    """A tool call that cannot be read; the message says where and why."""


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


def _strip_layout_newlines(value: str) -> str:
    value = value[1:] if value.startswith("\n") else value
    return value[:-1] if value.endswith("\n") else value


def _parameter_types(tools: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    types: dict[str, dict[str, str]] = {}
    for tool in tools:
        function = function_schema(tool)
        properties = (function.get("parameters") or {}).get("properties") or {}
        types[str(function.get("name", ""))] = {
            name: str(schema.get("type", "string")) for name, schema in properties.items()
        }
    return types


def _convert(function: str, name: str, raw: str, declared: str | None) -> Any:
    if declared is None or declared == "string":
        return raw
    text = raw.strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        if declared in ("integer", "number", "boolean", "object", "array"):
            raise ToolCallError(
                f"{function}: parameter {name!r} should be {declared}, got {text[:40]!r}"
            ) from None
        return raw
    return value


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def _parse_function(
    text: str, position: int, types: Mapping[str, Mapping[str, str]] | None
) -> tuple[ToolCall, int]:
    """One `<function=...>...</function>` block starting at or after `position` (whitespace
    only before it); returns the call and where it ends. Parsed front to back, so a value may
    contain `</function>` or `</tool_call>` (code that edits this very format does)."""
    match = _FUNCTION_OPEN.match(text, _skip_space(text, position))
    if match is None:
        raise ToolCallError("a <tool_call> without a <function=NAME> inside")
    name = match.group(1).strip()
    if not _NAME.fullmatch(name):
        raise ToolCallError(f"invalid function name {name!r}")
    declared = None if types is None else types.get(name)
    if types is not None and declared is None:
        raise ToolCallError(f"unknown function {name!r}")
    arguments: dict[str, Any] = {}
    position = match.end()
    while True:
        position = _skip_space(text, position)
        if text.startswith(FUNCTION_CLOSE, position):
            return ToolCall(name, arguments), position + len(FUNCTION_CLOSE)
        opening = _PARAMETER_OPEN.match(text, position)
        if opening is None:
            if position >= len(text):
                raise ToolCallError(f"{name}: missing {FUNCTION_CLOSE}")
            raise ToolCallError(f"{name}: stray text {text[position : position + 20]!r}")
        parameter = opening.group(1).strip()
        if not _NAME.fullmatch(parameter):
            raise ToolCallError(f"{name}: invalid parameter name {parameter!r}")
        end = text.find(PARAMETER_CLOSE, opening.end())
        if end < 0:
            raise ToolCallError(f"{name}: parameter {parameter!r} is not closed")
        if parameter in arguments:
            raise ToolCallError(f"{name}: parameter {parameter!r} given twice")
        raw = _strip_layout_newlines(text[opening.end() : end])
        kind = None if declared is None else declared.get(parameter, "string")
        arguments[parameter] = _convert(name, parameter, raw, kind)
        position = end + len(PARAMETER_CLOSE)


def parse_tool_calls(text: str, tools: Sequence[Mapping[str, Any]] | None = None) -> list[ToolCall]:
    """Every tool call in a model reply, in order.

    With `tools` (OpenAI-style schemas), unknown functions are errors and non-string
    parameters are decoded as JSON."""
    types = None if tools is None else _parameter_types(tools)
    calls: list[ToolCall] = []
    position = 0
    while True:
        start = text.find(TOOL_CALL_OPEN, position)
        if start < 0:
            break
        call, end = _parse_function(text, start + len(TOOL_CALL_OPEN), types)
        end = _skip_space(text, end)
        if not text.startswith(TOOL_CALL_CLOSE, end):
            raise ToolCallError(f"{call.name}: a {TOOL_CALL_OPEN} is not closed")
        calls.append(call)
        position = end + len(TOOL_CALL_CLOSE)
    if calls:
        return calls
    if TOOL_CALL_CLOSE in text:
        raise ToolCallError(f"a {TOOL_CALL_CLOSE} without its {TOOL_CALL_OPEN}")
    unwrapped = _FUNCTION_OPEN.search(text)
    if unwrapped is not None:
        # Some replies drop the <tool_call> wrapper; the function block is still unambiguous.
        return [_parse_function(text, unwrapped.start(), types)[0]]
    return []


def render_tool_call(call: ToolCall) -> str:
    """A tool call as the model writes it (chat history, tests)."""
    parts = [TOOL_CALL_OPEN, f"<function={call.name}>"]
    for name, value in call.arguments.items():
        text = value if isinstance(value, str) else json.dumps(value)
        parts += [f"<parameter={name}>", text, PARAMETER_CLOSE]
    parts += [FUNCTION_CLOSE, TOOL_CALL_CLOSE]
    return "\n".join(parts)
