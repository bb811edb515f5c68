"""The edit commands: `qcn.refactor`, `qcn.editFiles` and `qcn.rewrite`.

`qcn.refactor {instruction, symbol?, uri?, position?}` and `qcn.editFiles {instruction, uris}`
ask the model file by file (qcn_lsp.tool_loop) with `$/progress`, `qcn.rewrite {uri, range,
instruction}` rewrites one region (qcn_lsp.region_rewrite). The proposals become one checked
WorkspaceEdit that the editor previews (qcn_lsp.edits checks every path, match and version),
sent with `workspace/applyEdit`. The server itself never writes a file.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams

from qcn_lsp.edits import (
    EditRejected,
    ProposedChange,
    WorkspaceFiles,
    plan_changes,
    uri_to_path,
)
from qcn_lsp.errors import RequestFailed
from qcn_lsp.progress import Progress
from qcn_lsp.region_rewrite import rewrite_region

# Imported at run time: pygls resolves the annotations of command handlers.
from qcn_lsp.server import QcnServer
from qcn_lsp.text_sync import open_text_document
from qcn_lsp.tool_loop import SERVICE_WAIT_S, file_prompt, propose_changes, start_run
from qcn_lsp.wire import structured
from qcn_lsp.workspace import apply_edit, workspace_edit_for, workspace_files

if TYPE_CHECKING:
    from context.index import RepoIndex

StructuredT = TypeVar("StructuredT")

REFACTOR_COMMAND = "qcn.refactor"
EDIT_FILES_COMMAND = "qcn.editFiles"
REWRITE_COMMAND = "qcn.rewrite"
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def register(server: QcnServer) -> None:
    @server.command(REFACTOR_COMMAND)
    async def refactor(ls: QcnServer, *args: Any) -> dict[str, Any]:
        arguments = _single_object(args, REFACTOR_COMMAND)
        instruction = _text_argument(arguments, "instruction", REFACTOR_COMMAND)
        symbol = arguments.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            symbol = _symbol_at(ls, arguments)
        index = await ls.services.index_ready(SERVICE_WAIT_S)
        paths = _scope_paths(index, symbol)
        if not paths:
            raise RequestFailed(f"qcn-lsp: no definition or reference of {symbol!r} found")
        return await _guard(edit_files(ls, instruction, paths, f"qcn: refactor {symbol}"))

    @server.command(EDIT_FILES_COMMAND)
    async def edit_files_command(ls: QcnServer, *args: Any) -> dict[str, Any]:
        arguments = _single_object(args, EDIT_FILES_COMMAND)
        instruction = _text_argument(arguments, "instruction", EDIT_FILES_COMMAND)
        uris = arguments.get("uris")
        if not isinstance(uris, list) or not uris or not all(isinstance(u, str) for u in uris):
            raise JsonRpcInvalidParams(f"{EDIT_FILES_COMMAND}: 'uris' must be a list of URIs")
        paths = [_checked_path(uri) for uri in uris]
        return await _guard(edit_files(ls, instruction, paths, "qcn: edit files"))

    @server.command(REWRITE_COMMAND)
    async def rewrite(ls: QcnServer, *args: Any) -> dict[str, Any]:
        arguments = _single_object(args, REWRITE_COMMAND)
        uri = _text_argument(arguments, "uri", REWRITE_COMMAND)
        instruction = _text_argument(arguments, "instruction", REWRITE_COMMAND)
        client_range = _structured(arguments.get("range"), types.Range, REWRITE_COMMAND)
        try:
            edit = await rewrite_region(ls, uri, client_range, instruction, None)
        except EditRejected as exc:
            return _nothing_applied(ls, str(exc))
        return await apply_edit(ls, edit, instruction, [uri_to_path(uri).name], None)


# -- the work ---------------------------------------------------------------------------------


async def edit_files(
    ls: QcnServer, instruction: str, paths: Sequence[Path], title: str
) -> dict[str, Any]:
    """Ask the model file by file, collect one WorkspaceEdit and send it for confirmation."""
    files = workspace_files(ls)
    # Targets outside the workspace are refused before any model work.
    targets = [files.resolve(str(path)) for path in paths]
    run = await start_run(ls, key=f"refactor:{uuid.uuid4().hex}")
    try:
        index: RepoIndex | None = await ls.services.index_ready(SERVICE_WAIT_S)
    except JsonRpcException:
        index = None  # read-only tools say the index is not ready
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
                    index=index,
                    max_rounds=ls.settings.edits.max_tool_rounds,
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
        return _nothing_applied(ls, "; ".join([*skipped, str(exc)]))
    names = [files.display(path) for path in plan.paths()]
    return await apply_edit(ls, edit, label, names, "; ".join(skipped) or None)


def _nothing_applied(ls: QcnServer, reason: str) -> dict[str, Any]:
    """The result of a command that has no edit to send. The plugin that ran the command shows
    the reason; a `window/logMessage` keeps it for clients that ignore results (Helix)."""
    ls.window_log_message(
        types.LogMessageParams(type=types.MessageType.Info, message=f"qcn-lsp: {reason}")
    )
    return {"applied": False, "cancelled": False, "files": [], "reason": reason}


def _scope_paths(index: RepoIndex, symbol: str) -> list[Path]:
    """The definition file(s) of `symbol` and every file referencing it, definitions first."""
    with index.reading() as graph:
        keys = [item.path for item in graph.definitions(symbol)]
        keys += [item.path for item in graph.references(symbol)]
    return [index.scanner.path_for(key) for key in dict.fromkeys(keys)]


async def _guard(work: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    try:
        return await work
    except EditRejected as exc:
        raise RequestFailed(f"qcn-lsp: {exc}") from exc


# -- argument parsing -------------------------------------------------------------------------


def _single_object(args: Sequence[Any], command: str) -> Mapping[str, Any]:
    if len(args) != 1 or not isinstance(args[0], Mapping):
        raise JsonRpcInvalidParams(f"{command} takes one object argument")
    return args[0]


def _text_argument(arguments: Mapping[str, Any], key: str, command: str) -> str:
    value = arguments.get(key)
    if not isinstance(value, str) or not value.strip():
        raise JsonRpcInvalidParams(f"{command}: {key!r} must be a non-empty string")
    return value


def _structured(value: Any, kind: type[StructuredT], command: str) -> StructuredT:
    try:
        return structured(value, kind)
    except ValueError as exc:
        raise JsonRpcInvalidParams(f"{command}: {exc}") from exc


def _checked_path(uri: str) -> Path:
    try:
        return uri_to_path(uri)
    except EditRejected as exc:
        raise JsonRpcInvalidParams(str(exc)) from exc


def _symbol_at(ls: QcnServer, arguments: Mapping[str, Any]) -> str:
    uri, position = arguments.get("uri"), arguments.get("position")
    if not isinstance(uri, str) or not isinstance(position, Mapping):
        raise JsonRpcInvalidParams(f"{REFACTOR_COMMAND}: give 'symbol' or 'uri' and 'position'")
    doc = open_text_document(ls.workspace, uri)
    if doc is None:
        raise JsonRpcInvalidParams(f"{REFACTOR_COMMAND}: {uri} is not open")
    word = doc.word_at_position(_structured(position, types.Position, REFACTOR_COMMAND))
    if not IDENTIFIER.fullmatch(word or ""):
        raise JsonRpcInvalidParams(f"{REFACTOR_COMMAND}: no symbol at the given position")
    return word
