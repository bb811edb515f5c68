"""The model rewrites a region of one open document (code actions and `qcn.rewrite`).

Only the whole lines of the region can change: edit_file calls must match inside it, a
fenced block replaces it, and the result is one checked WorkspaceEdit for the listed version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.workspace import TextDocument

from qcn_lsp.edit_tools import MAX_PROMPT_FILE_CHARS, SYSTEM_PROMPT, tool_calls
from qcn_lsp.edits import (
    EditPlan,
    EditRejected,
    FileEdit,
    change_from_tool_call,
    replace_exactly_once,
    uri_to_path,
)
from qcn_lsp.text_sync import lsp_lines, open_text_document
from qcn_lsp.tool_loop import start_run
from qcn_lsp.workspace import workspace_edit_for, workspace_files

if TYPE_CHECKING:
    from qcn_lsp.server import QcnServer

# Lines of unchanged context shown around a rewritten region.
REGION_CONTEXT_LINES = 3
FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class Region:
    start: int  # offsets into the document text (Python str indices)
    end: int


def region_for(doc: TextDocument, client_range: types.Range) -> Region:
    """The whole lines covered by `client_range` (client units) as text offsets.

    Out-of-range lines are clamped to the document: a region always lies inside it.
    """
    lines = doc.lines
    if not lines:
        return Region(0, 0)

    def clamped(position: types.Position) -> types.Position:
        line = min(max(position.line, 0), len(lines) - 1)
        return types.Position(line=line, character=max(position.character, 0))

    server_range = doc.range_from_client_units(
        types.Range(start=clamped(client_range.start), end=clamped(client_range.end))
    )
    first = server_range.start.line
    last = max(server_range.end.line, first)
    if last > first and server_range.end.character == 0:
        last -= 1  # a selection ending at column 0 does not include that line
    start = sum(len(line) for line in lines[:first])
    end = start + sum(len(line) for line in lines[first : last + 1])
    return Region(start, end)


def fenced_replacement(text: str) -> str | None:
    """The content of the first fenced code block in a model answer, if any."""
    match = FENCE.search(text)
    return match.group(1) if match else None


def apply_region_answer(answer: str, text: str, region: Region, name: str) -> str:
    """The document text after the model's answer for `region`: edit_file calls (old_text
    matching once inside the region) or one fenced block replacing the region. Both only ever
    change the region: the model cannot reach text outside it."""
    try:
        calls = tool_calls(answer)
    except EditRejected:
        calls = []  # not a readable tool call: the answer may still hold a fenced block
    edits = [change_from_tool_call(n, a) for n, a in calls if n == "edit_file"]
    if not edits:
        replacement = fenced_replacement(answer)
        if replacement is None:
            raise EditRejected(f"{name}: the model proposed no edit")
        return text[: region.start] + replacement + text[region.end :]
    region_text = text[region.start : region.end]
    for edit in edits:
        assert isinstance(edit, FileEdit)
        try:
            region_text = replace_exactly_once(region_text, edit.old_text, edit.new_text, name)
        except EditRejected:
            raise EditRejected(
                f"{name}: the model's old_text does not match the region once"
            ) from None
    return text[: region.start] + region_text + text[region.end :]


async def rewrite_region(
    ls: QcnServer,
    uri: str,
    client_range: types.Range,
    instruction: str,
    expected_version: int | None,
) -> types.WorkspaceEdit:
    """Ask the model to rewrite the lines of `client_range`; a checked WorkspaceEdit or
    EditRejected saying why none can be offered."""
    path = uri_to_path(uri)
    doc = open_text_document(ls.workspace, uri)
    if doc is None:
        raise EditRejected(f"{path.name}: not open in the editor")
    if expected_version is not None and doc.version != expected_version:
        raise EditRejected(f"{path.name}: changed since the action was listed; ask again")
    files = workspace_files(ls, single_file=path)
    snapshot = files.read(str(path))
    text = snapshot.text
    region = region_for(doc, client_range)
    if region.end - region.start > MAX_PROMPT_FILE_CHARS:
        raise EditRejected(f"{path.name}: the region is too large to rewrite; select less")
    before_ctx = "".join(lsp_lines(text[: region.start])[-REGION_CONTEXT_LINES:])
    after_ctx = "".join(lsp_lines(text[region.end :])[:REGION_CONTEXT_LINES])
    name = files.display(snapshot.path)
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": (
                f"{instruction}\n\nFile {name}, lines before:\n"
                f"```\n{before_ctx}```\nRegion to rewrite:\n```\n{text[region.start : region.end]}"
                f"```\nLines after:\n```\n{after_ctx}```\nAnswer with the edit_file tool on "
                "the region, or with the whole new region in one fenced code block."
            ),
        },
    ]
    run = await start_run(ls, key=f"rewrite:{uri}")
    answer = await run.reply(messages)
    after = apply_region_answer(answer, text, region, name)
    plan = EditPlan(
        edited={snapshot.path: (snapshot, after)} if after != text else {},
        regions={snapshot.path: (region.start, region.end)},
    )
    return workspace_edit_for(ls, files, plan, instruction[:80])
