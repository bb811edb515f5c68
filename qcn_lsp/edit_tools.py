"""The tools the model edits with: their schema, the system prompt, and reading its calls."""

from __future__ import annotations

from typing import Any

from engine.toolcalls import ToolCallError, parse_tool_calls
from qcn_lsp.edits import EditRejected

# Characters of a file shown to the model in one edit prompt or tool answer.
MAX_PROMPT_FILE_CHARS = 24_000

SYSTEM_PROMPT = (
    "You are a careful code editor. Change code only through the tools: edit_file replaces "
    "old_text (copied exactly, matching once) with new_text; create_file makes a new file. "
    "Use read_file, find_symbol and find_references to look at code you were not shown. "
    "When done, answer without tool calls."
)


def _tool(tool_name: str, description: str, **parameters: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool_name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {
                    key: {"type": "string", "description": text} for key, text in parameters.items()
                },
                "required": list(parameters),
            },
        },
    }


EDIT_TOOLS: tuple[dict[str, Any], ...] = (
    _tool(
        "edit_file",
        "Replace text in a workspace file.",
        path="path relative to the workspace root",
        old_text="exact current text, matching once",
        new_text="replacement text",
    ),
    _tool(
        "create_file",
        "Create a new file.",
        path="path relative to the workspace root",
        content="content",
    ),
    _tool("read_file", "Read a workspace file.", path="path relative to the workspace root"),
    _tool("find_symbol", "Where a symbol is defined.", name="symbol name"),
    _tool("find_references", "Where a symbol is used.", name="symbol name"),
)


def tool_calls(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The (name, arguments) of every tool call in a model answer; EditRejected if unreadable."""
    try:
        calls = parse_tool_calls(text)
    except ToolCallError as exc:
        raise EditRejected(f"the model's tool call could not be read: {exc}") from exc
    return [(call.name, dict(call.arguments)) for call in calls]
