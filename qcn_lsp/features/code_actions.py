"""Fix-it and rewrite code actions: listed instantly, the model runs only once one is chosen.

Listing answers from the request alone (one quick fix per diagnostic the client sends, from
any language server, and a rewrite for a non-empty selection). `codeAction/resolve` asks the
model, checks the proposed edit (applies to the listed document version, re-parses without
new syntax errors, stays inside the region) and returns it. When no edit comes, the reason is
shown once: clients with `disabledSupport` get the action disabled with the reason and a
`window/showMessage` (VS Code shows nothing for a resolved action that came back disabled),
the others a JSON-RPC error, which they show.

Clients without `codeAction.resolveSupport` (eglot 1.9) never resolve: their actions carry a
`qcn.runCodeAction` command instead, which answers at once (eglot waits 10 s per request), runs
the model in the background and sends the checked edit with `workspace/applyEdit`, or says
with `window/showMessage` why none came.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from qcn_lsp.edits import EditRejected, uri_to_path
from qcn_lsp.errors import RequestFailed
from qcn_lsp.progress import Progress
from qcn_lsp.region_rewrite import rewrite_region

# Imported at run time: pygls resolves the annotations of command handlers.
from qcn_lsp.server import QcnServer
from qcn_lsp.text_sync import open_text_document
from qcn_lsp.wire import LSP_CONVERTER, structured
from qcn_lsp.workspace import apply_edit

logger = logging.getLogger(__name__)

RUN_ACTION_COMMAND = "qcn.runCodeAction"

# Quick fixes offered for one request: the diagnostics at the cursor, not a whole file's.
MAX_FIXES = 5
REWRITE_INSTRUCTION = "Rewrite this code so that it is clearer and correct, keeping its behaviour."
ACTION_KINDS = [types.CodeActionKind.QuickFix, types.CodeActionKind.RefactorRewrite]


def _wanted(kind: str, only: list[str] | None) -> bool:
    return not only or any(kind == k or kind.startswith(f"{k}.") for k in only)


def list_actions(
    uri: str, version: int | None, params: types.CodeActionParams
) -> list[types.CodeAction]:
    only = [str(kind) for kind in params.context.only or []] or None
    actions: list[types.CodeAction] = []
    if _wanted(types.CodeActionKind.QuickFix, only):
        for diagnostic in params.context.diagnostics[:MAX_FIXES]:
            message = diagnostic.message.strip().splitlines()[0][:120] if diagnostic.message else ""
            reporter = diagnostic.source or "a linter"
            actions.append(
                types.CodeAction(
                    title=f"Qwen: fix “{message}”",
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=[diagnostic],
                    data={
                        "uri": uri,
                        "version": version,
                        "range": LSP_CONVERTER.unstructure(diagnostic.range),
                        "instruction": f"Fix this problem reported by {reporter}: {message}",
                    },
                )
            )
    selection = params.range
    if selection.start != selection.end and _wanted(types.CodeActionKind.RefactorRewrite, only):
        actions.append(
            types.CodeAction(
                title="Qwen: rewrite selection",
                kind=types.CodeActionKind.RefactorRewrite,
                data={
                    "uri": uri,
                    "version": version,
                    "range": LSP_CONVERTER.unstructure(selection),
                    "instruction": REWRITE_INSTRUCTION,
                },
            )
        )
    return actions


def _code_action_capabilities(ls: QcnServer) -> types.CodeActionClientCapabilities | None:
    document = ls.client_capabilities.text_document
    return document.code_action if document else None


def _disabled_support(ls: QcnServer) -> bool:
    code_action = _code_action_capabilities(ls)
    return bool(code_action and code_action.disabled_support)


def _resolves_edits(ls: QcnServer) -> bool:
    code_action = _code_action_capabilities(ls)
    support = code_action.resolve_support if code_action else None
    return bool(support and "edit" in support.properties)


def _with_command(action: types.CodeAction) -> types.CodeAction:
    """For clients that cannot resolve: choosing the action runs the model through a command."""
    action.command = types.Command(
        title=action.title, command=RUN_ACTION_COMMAND, arguments=[action.data]
    )
    return action


def _warn(ls: QcnServer, message: str) -> None:
    ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning, message=message))


def _action_data(data: Any) -> tuple[str, types.Range, str, int | None]:
    """What `list_actions` put in `data`; anything else is refused (clients echo it back)."""
    if not isinstance(data, dict):
        raise EditRejected("this action was not listed by qcn-lsp")
    uri, instruction, version = data.get("uri"), data.get("instruction"), data.get("version")
    try:
        client_range: types.Range | None = structured(data.get("range"), types.Range)
    except ValueError:
        client_range = None
    if (
        not isinstance(uri, str)
        or not isinstance(instruction, str)
        or not (version is None or isinstance(version, int))
        or client_range is None
    ):
        raise EditRejected("this action's data is not what qcn-lsp listed")
    return uri, client_range, instruction, version


def register(server: QcnServer) -> None:
    # Background runs of qcn.runCodeAction (asyncio holds only weak references to tasks).
    running: set[asyncio.Task[None]] = set()

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=ACTION_KINDS, resolve_provider=True),
    )
    def code_action(ls: QcnServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        uri = params.text_document.uri
        doc = open_text_document(ls.workspace, uri)
        if doc is None or not uri.startswith("file:"):
            return []  # nothing to offer for unopened or non-file documents
        actions = list_actions(uri, doc.version, params)
        return actions if _resolves_edits(ls) else [_with_command(a) for a in actions]

    @server.feature(types.CODE_ACTION_RESOLVE)
    async def resolve(ls: QcnServer, action: types.CodeAction) -> types.CodeAction:
        try:
            uri, client_range, instruction, version = _action_data(action.data)
            action.edit = await rewrite_region(ls, uri, client_range, instruction, version)
        except (EditRejected, RequestFailed) as exc:
            message = exc.message if isinstance(exc, RequestFailed) else f"qcn-lsp: {exc}"
            logger.info("code action not offered: %s", message)
            if not _disabled_support(ls):
                raise RequestFailed(message) from exc
            action.disabled = types.CodeActionDisabled(reason=message.removeprefix("qcn-lsp: "))
            _warn(ls, message)
        return action

    @server.command(RUN_ACTION_COMMAND)
    async def run_action(ls: QcnServer, *args: Any) -> None:
        try:
            uri, client_range, instruction, version = _action_data(args[0] if args else None)
        except EditRejected as exc:
            raise JsonRpcInvalidParams(f"{RUN_ACTION_COMMAND}: {exc}") from exc
        task = asyncio.get_running_loop().create_task(
            _run_action(ls, uri, client_range, instruction, version)
        )
        running.add(task)
        task.add_done_callback(running.discard)


async def _run_action(
    ls: QcnServer, uri: str, client_range: types.Range, instruction: str, version: int | None
) -> None:
    """The model's edit for a chosen action, sent with workspace/applyEdit; or why none came."""
    try:
        async with Progress(ls, "qcn: code action", cancellable=False):
            edit = await rewrite_region(ls, uri, client_range, instruction, version)
        outcome = await apply_edit(ls, edit, instruction, [uri_to_path(uri).name], None)
    except (EditRejected, RequestFailed) as exc:
        message = exc.message if isinstance(exc, RequestFailed) else f"qcn-lsp: {exc}"
        logger.info("code action not applied: %s", message)
        _warn(ls, message)
        return
    except Exception:  # a background task: nobody else would hear of it
        logger.exception("code action failed")
        _warn(ls, "qcn-lsp: the code action failed; the server log says why")
        return
    if not outcome["applied"]:
        _warn(ls, f"qcn-lsp: the edit was not applied: {outcome['reason'] or 'declined'}")
