"""Model-driven edits: region rewrites, multi-file edit proposals and the workspace commands.

`qcn.refactor {instruction, symbol?, uri?, position?}`, `qcn.editFiles {instruction, uris}` and
`qcn.rewrite {uri, range, instruction}` run the model (on the background lane for the first
two), turn its `edit_file` / `create_file` tool calls into one WorkspaceEdit that the editor
previews (qcn_lsp.edits checks every path, match and version), and send it with
`workspace/applyEdit`. The server itself never writes a file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types
from lsprotocol.converters import get_converter
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.workspace import TextDocument

from engine.backend import Backend, Generation, Lane
from engine.errors import EngineError
from engine.params import GenerationParams
from qcn_lsp.edits import (
    EDIT_TOOL_NAMES,
    EditPlan,
    EditRejected,
    EditSupport,
    FileEdit,
    OpenDocument,
    ProposedChange,
    WorkspaceFiles,
    change_from_tool_call,
    check_syntax,
    plan_changes,
    to_workspace_edit,
    uri_to_path,
)
from qcn_lsp.progress import Progress
from qcn_lsp.server import QcnServer

logger = logging.getLogger(__name__)

LSP_CONVERTER = get_converter()
StructuredT = TypeVar("StructuredT")

REFACTOR_COMMAND = "qcn.refactor"
EDIT_FILES_COMMAND = "qcn.editFiles"
REWRITE_COMMAND = "qcn.rewrite"

# How long a command waits for the model / index to become ready before answering with
# the service's "still loading" error.
SERVICE_WAIT_S = 5.0
# Lines of unchanged context shown around a rewritten region.
REGION_CONTEXT_LINES = 3
# Characters of a file shown to the model in one edit prompt.
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


class RequestFailed(JsonRpcException):
    """An edit request that cannot be served (model or index not ready, nothing to edit);
    the message says why and what to do."""

    CODE = -32803  # LSP RequestFailed


# -- services -------------------------------------------------------------------------------


async def backend_for(ls: QcnServer) -> Backend:
    services = getattr(ls, "services", None)
    if services is None:
        raise RequestFailed("qcn-lsp: the model service is not running")
    try:
        return await services.backend_ready(SERVICE_WAIT_S)
    except EngineError as exc:
        raise RequestFailed(f"qcn-lsp: {exc}") from exc


async def symbol_graph_for(ls: QcnServer) -> Any:
    services = getattr(ls, "services", None)
    if services is None:
        raise RequestFailed("qcn-lsp: the workspace index is not running")
    index = await services.index_ready(SERVICE_WAIT_S)
    return index.graph


def workspace_files(ls: QcnServer, single_file: Path | None = None) -> WorkspaceFiles:
    """The workspace folders' files; with no folder open, `single_file`'s directory."""
    roots = [uri_to_path(folder.uri) for folder in ls.workspace.folders.values()]
    if not roots and ls.workspace.root_uri:
        roots = [uri_to_path(ls.workspace.root_uri)]
    if not roots and single_file is not None:
        roots = [single_file.parent]

    open_docs = {
        uri_to_path(uri).resolve(): doc
        for uri, doc in ls.workspace.text_documents.items()
        if uri.startswith("file:")
    }

    def open_document(path: Path) -> OpenDocument | None:
        doc = open_docs.get(path)
        return OpenDocument(doc.source, doc.version) if doc else None

    return WorkspaceFiles(roots, open_document)


def workspace_edit_for(
    ls: QcnServer, files: WorkspaceFiles, plan: EditPlan, label: str
) -> types.WorkspaceEdit:
    check_syntax(plan, files)
    return to_workspace_edit(
        files,
        plan,
        support=EditSupport.of(ls.client_capabilities),
        label=label,
        codec=ls.workspace.position_codec,
    )


# -- one model round trip ---------------------------------------------------------------------


def _chat_prompt(backend: Backend, messages: Sequence[Mapping[str, str]]) -> Any:
    from engine.formats import chat_prompt

    # The model's own chat template when its GGUF carries one (real models do).
    return chat_prompt(messages, EDIT_TOOLS, chat_template=backend.info().chat_template)


def _tool_calls(text: str) -> list[tuple[str, dict[str, Any]]]:
    from engine.toolcalls import ToolCallError, parse_tool_calls

    try:
        calls = parse_tool_calls(text)
    except ToolCallError as exc:
        raise EditRejected(f"the model's tool call could not be read: {exc}") from exc
    return [(call.name, dict(call.arguments)) for call in calls]


FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)


def fenced_replacement(text: str) -> str | None:
    """The content of the first fenced code block in a model answer, if any."""
    match = FENCE.search(text)
    return match.group(1) if match else None


@dataclass
class ModelRun:
    """One model conversation; `cancel()` stops the generation in flight."""

    backend: Backend
    params: GenerationParams
    lane: Lane
    key: str
    current: Generation | None = None
    cancelled: bool = False

    async def reply(self, messages: Sequence[Mapping[str, str]]) -> str:
        if self.cancelled:
            raise asyncio.CancelledError
        try:
            self.current = self.backend.stream(
                _chat_prompt(self.backend, messages), self.params, key=self.key, lane=self.lane
            )
            return await self.current.text()
        except asyncio.CancelledError:
            # $/cancelRequest cancels this task; the engine's thread needs telling too.
            if self.current is not None:
                self.current.cancel()
            raise
        except EngineError as exc:
            raise RequestFailed(f"qcn-lsp: {exc}") from exc
        finally:
            self.current = None

    def cancel(self) -> None:
        self.cancelled = True
        if self.current is not None:
            self.current.cancel()


def _describe(items: Any) -> str:
    """Symbol graph answers as text for the model: one `path:line name` per item."""
    lines = []
    for item in list(items or [])[:50]:
        path = getattr(item, "path", None)
        line = getattr(item, "line", getattr(item, "start_line", None))
        name = getattr(item, "name", "")
        lines.append(f"{path}:{'' if line is None else int(line) + 1} {name}".strip())
    return "\n".join(lines) or "(none)"


async def propose_changes(
    run: ModelRun,
    files: WorkspaceFiles,
    messages: list[dict[str, str]],
    *,
    graph: Any,
    max_rounds: int,
) -> list[ProposedChange]:
    """Model -> tool calls -> tool results -> model, at most `max_rounds` times.

    Edit calls are collected (never applied here); read-only calls are answered from the
    workspace (read_file records what the model saw, for the staleness check later).
    """
    changes: list[ProposedChange] = []
    for _ in range(max_rounds):
        answer = await run.reply(messages)
        calls = _tool_calls(answer)
        results: list[str] = []
        for name, arguments in calls:
            if name in EDIT_TOOL_NAMES:
                changes.append(change_from_tool_call(name, arguments))
                continue
            results.append(_answer_tool(name, arguments, files, graph))
        if not results:
            break
        messages.append({"role": "assistant", "content": answer})
        messages.append(
            {
                "role": "user",
                "content": "\n".join(f"<tool_response>\n{r}\n</tool_response>" for r in results),
            }
        )
    return changes


def _answer_tool(name: str, arguments: Mapping[str, Any], files: WorkspaceFiles, graph: Any) -> str:
    try:
        if name == "read_file":
            return files.read(str(arguments.get("path", ""))).text[:MAX_PROMPT_FILE_CHARS]
        symbol = str(arguments.get("name", ""))
        if graph is None:
            return "error: the workspace index is not ready"
        if name == "find_symbol":
            return _describe(graph.definitions(symbol))
        if name == "find_references":
            return _describe(graph.references(symbol))
        return f"error: unknown tool {name}"
    except EditRejected as exc:
        return f"error: {exc}"


def file_prompt(instruction: str, display_path: str, text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": f"{instruction}\n\nFile {display_path}:\n```\n"
            f"{text[:MAX_PROMPT_FILE_CHARS]}\n```",
        },
    ]


# -- region rewrite (code actions and qcn.rewrite) --------------------------------------------


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
    doc = ls.workspace.text_documents.get(uri)
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
    before_ctx = "".join(text[: region.start].splitlines(keepends=True)[-REGION_CONTEXT_LINES:])
    after_ctx = "".join(text[region.end :].splitlines(keepends=True)[:REGION_CONTEXT_LINES])
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": (
                f"{instruction}\n\nFile {files.display(snapshot.path)}, lines before:\n"
                f"```\n{before_ctx}```\nRegion to rewrite:\n```\n{text[region.start : region.end]}"
                f"```\nLines after:\n```\n{after_ctx}```\nAnswer with the edit_file tool on "
                "the region, or with the whole new region in one fenced code block."
            ),
        },
    ]
    run = ModelRun(await backend_for(ls), _edit_params(ls), "interactive", key=f"rewrite:{uri}")
    answer = await run.reply(messages)
    after = apply_region_answer(answer, text, region, files.display(snapshot.path))
    plan = EditPlan(edited={snapshot.path: (snapshot, after)} if after != text else {})
    return workspace_edit_for(ls, files, plan, instruction[:80])


def apply_region_answer(answer: str, text: str, region: Region, name: str) -> str:
    """The document text after the model's answer for `region`: edit_file calls (old_text
    matching once inside the region) or one fenced block replacing the region. Both only ever
    change the region: the model cannot reach text outside it."""
    try:
        calls = _tool_calls(answer)
    except EditRejected:
        calls = []  # not a readable tool call: the answer may still hold a fenced block
    edits = [change_from_tool_call(n, a) for n, a in calls if n == "edit_file"]
    if edits:
        after, region_end = text, region.end
        for edit in edits:
            assert isinstance(edit, FileEdit)
            region_text = after[region.start : region_end]
            if not edit.old_text or region_text.count(edit.old_text) != 1:
                raise EditRejected(f"{name}: the model's old_text does not match the region once")
            offset = region.start + region_text.index(edit.old_text)
            after = after[:offset] + edit.new_text + after[offset + len(edit.old_text) :]
            region_end += len(edit.new_text) - len(edit.old_text)
    else:
        replacement = fenced_replacement(answer)
        if replacement is None:
            raise EditRejected(f"{name}: the model proposed no edit")
        after = text[: region.start] + replacement + text[region.end :]
    return after


def _edit_params(ls: QcnServer) -> GenerationParams:
    return GenerationParams(max_tokens=int(ls.settings["edits.maxTokens"]), temperature=0.0)


# -- commands ---------------------------------------------------------------------------------


def _single_object(args: Sequence[Any], command: str) -> Mapping[str, Any]:
    if len(args) != 1 or not isinstance(args[0], Mapping):
        raise JsonRpcInvalidParams(f"{command} takes one object argument")
    return args[0]


def _text_argument(arguments: Mapping[str, Any], key: str, command: str) -> str:
    value = arguments.get(key)
    if not isinstance(value, str) or not value.strip():
        raise JsonRpcInvalidParams(f"{command}: {key!r} must be a non-empty string")
    return value


async def edit_files_with_progress(
    ls: QcnServer, instruction: str, paths: Sequence[Path], title: str
) -> dict[str, Any]:
    """Ask the model file by file, collect one WorkspaceEdit and send it for confirmation."""
    files = workspace_files(ls)
    # Targets outside the workspace are refused before any model work.
    targets = [files.resolve(str(path)) for path in paths]
    backend = await backend_for(ls)
    try:
        graph = await symbol_graph_for(ls)
    except JsonRpcException:
        graph = None  # read-only tools say the index is not ready
    run = ModelRun(backend, _edit_params(ls), "background", key=f"refactor:{uuid.uuid4().hex}")
    changes: list[ProposedChange] = []
    skipped: list[str] = []
    async with Progress(ls, title) as progress:
        progress.on_cancel(run.cancel)
        for k, path in enumerate(targets, start=1):
            name = files.display(path)
            progress.report(
                f"file {k} of {len(targets)}: {name}", int(100 * (k - 1) / len(targets))
            )
            if progress.cancelled or run.cancelled:
                return {"applied": False, "cancelled": True, "files": []}
            try:
                snapshot = files.read(str(path))
                messages = file_prompt(instruction, name, snapshot.text)
                changes += await propose_changes(
                    run,
                    files,
                    messages,
                    graph=graph,
                    max_rounds=int(ls.settings["edits.maxToolRounds"]),
                )
            except asyncio.CancelledError:
                if run.cancelled:
                    return {"applied": False, "cancelled": True, "files": []}
                raise
            except (EditRejected, RequestFailed) as exc:
                # One file's failure (a refused proposal, a prompt too long for the
                # context) leaves the other files' proposals standing.
                skipped.append(str(exc) if isinstance(exc, EditRejected) else f"{name}: {exc}")
    return await _send_edit(ls, files, changes, instruction, skipped)


async def _send_edit(
    ls: QcnServer,
    files: WorkspaceFiles,
    changes: Sequence[ProposedChange],
    label: str,
    skipped: Sequence[str],
) -> dict[str, Any]:
    try:
        plan = plan_changes(files, changes)
        edit = workspace_edit_for(ls, files, plan, label[:80])
    except EditRejected as exc:
        message = "; ".join([*skipped, str(exc)])
        ls.window_show_message(
            types.ShowMessageParams(type=types.MessageType.Warning, message=f"qcn-lsp: {message}")
        )
        return {"applied": False, "cancelled": False, "files": [], "reason": message}
    names = [files.display(path) for path in plan.paths()]
    return await apply_edit(ls, edit, label, names, "; ".join(skipped) or None)


async def apply_edit(
    ls: QcnServer, edit: types.WorkspaceEdit, label: str, names: list[str], note: str | None
) -> dict[str, Any]:
    """Send `edit` with workspace/applyEdit; the command's result says what became of it."""
    outcome: dict[str, Any] = {"applied": False, "cancelled": False, "files": names}
    workspace = ls.client_capabilities.workspace
    if not (workspace and workspace.apply_edit):
        # The edit still goes back, for a client that applies command results itself.
        outcome["reason"] = "this editor does not accept workspace/applyEdit"
        outcome["edit"] = LSP_CONVERTER.unstructure(edit)
        return outcome
    result = await ls.workspace_apply_edit_async(
        types.ApplyWorkspaceEditParams(edit=edit, label=f"qcn: {label[:80]}")
    )
    outcome["applied"] = bool(result and result.applied)
    outcome["reason"] = (result.failure_reason if result else None) or note
    return outcome


def _scope_paths(graph: Any, symbol: str) -> list[Path]:
    """The definition file(s) of `symbol` and every file referencing it, definitions first."""
    ordered: dict[Path, None] = {}
    for item in [*graph.definitions(symbol), *graph.references(symbol)]:
        path = getattr(item, "path", None)
        if path is not None:
            ordered.setdefault(Path(path), None)
    return list(ordered)


def register(server: QcnServer) -> None:
    @server.command(REFACTOR_COMMAND)
    async def refactor(ls: QcnServer, *args: Any) -> dict[str, Any]:
        arguments = _single_object(args, REFACTOR_COMMAND)
        instruction = _text_argument(arguments, "instruction", REFACTOR_COMMAND)
        symbol = arguments.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            symbol = _symbol_at(ls, arguments)
        graph = await symbol_graph_for(ls)
        paths = _scope_paths(graph, symbol)
        if not paths:
            raise RequestFailed(f"qcn-lsp: no definition or reference of {symbol!r} found")
        return await _guard(
            edit_files_with_progress(ls, instruction, paths, f"qcn: refactor {symbol}")
        )

    @server.command(EDIT_FILES_COMMAND)
    async def edit_files(ls: QcnServer, *args: Any) -> dict[str, Any]:
        arguments = _single_object(args, EDIT_FILES_COMMAND)
        instruction = _text_argument(arguments, "instruction", EDIT_FILES_COMMAND)
        uris = arguments.get("uris")
        if not isinstance(uris, list) or not uris or not all(isinstance(u, str) for u in uris):
            raise JsonRpcInvalidParams(f"{EDIT_FILES_COMMAND}: 'uris' must be a list of URIs")
        paths = [_checked_path(uri) for uri in uris]
        return await _guard(edit_files_with_progress(ls, instruction, paths, "qcn: edit files"))

    @server.command(REWRITE_COMMAND)
    async def rewrite(ls: QcnServer, *args: Any) -> dict[str, Any]:
        arguments = _single_object(args, REWRITE_COMMAND)
        uri = _text_argument(arguments, "uri", REWRITE_COMMAND)
        instruction = _text_argument(arguments, "instruction", REWRITE_COMMAND)
        client_range = _structured(arguments.get("range"), types.Range, REWRITE_COMMAND)
        try:
            edit = await rewrite_region(ls, uri, client_range, instruction, None)
        except EditRejected as exc:
            return {"applied": False, "cancelled": False, "files": [], "reason": str(exc)}
        return await apply_edit(ls, edit, instruction, [uri_to_path(uri).name], None)


async def _guard(work: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    try:
        return await work
    except EditRejected as exc:
        raise RequestFailed(f"qcn-lsp: {exc}") from exc


def _structured(value: Any, kind: type[StructuredT], command: str) -> StructuredT:
    try:
        return LSP_CONVERTER.structure(value, kind)
    except Exception as exc:
        raise JsonRpcInvalidParams(
            f"{command}: {json.dumps(value)} is not a {kind.__name__}"
        ) from exc


def _checked_path(uri: str) -> Path:
    try:
        return uri_to_path(uri)
    except EditRejected as exc:
        raise JsonRpcInvalidParams(str(exc)) from exc


IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _symbol_at(ls: QcnServer, arguments: Mapping[str, Any]) -> str:
    uri, position = arguments.get("uri"), arguments.get("position")
    if not isinstance(uri, str) or not isinstance(position, Mapping):
        raise JsonRpcInvalidParams(f"{REFACTOR_COMMAND}: give 'symbol' or 'uri' and 'position'")
    doc = ls.workspace.text_documents.get(uri)
    if doc is None:
        raise JsonRpcInvalidParams(f"{REFACTOR_COMMAND}: {uri} is not open")
    word = doc.word_at_position(_structured(position, types.Position, REFACTOR_COMMAND))
    if not IDENTIFIER.fullmatch(word or ""):
        raise JsonRpcInvalidParams(f"{REFACTOR_COMMAND}: no symbol at the given position")
    return word
