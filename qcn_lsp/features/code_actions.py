"""Fix-it and rewrite code actions: listed instantly, the model runs only on resolve.

Listing answers from the request alone (one quick fix per diagnostic the client sends, from
any language server, and a rewrite for a non-empty selection). `codeAction/resolve` asks the
model, checks the proposed edit (applies to the listed document version, re-parses without
new syntax errors, stays inside the region) and returns it, or returns the action disabled
with the reason; clients that cannot show disabled actions get a JSON-RPC error instead.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from qcn_lsp.edits import EditRejected
from qcn_lsp.errors import RequestFailed
from qcn_lsp.region_rewrite import rewrite_region
from qcn_lsp.text_sync import open_text_document
from qcn_lsp.wire import LSP_CONVERTER, structured

if TYPE_CHECKING:
    from qcn_lsp.server import QcnServer

logger = logging.getLogger(__name__)

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


def _disabled_support(ls: QcnServer) -> bool:
    document = ls.client_capabilities.text_document
    code_action = document.code_action if document else None
    return bool(code_action and code_action.disabled_support)


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
    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=ACTION_KINDS, resolve_provider=True),
    )
    def code_action(ls: QcnServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        uri = params.text_document.uri
        doc = open_text_document(ls.workspace, uri)
        if doc is None or not uri.startswith("file:"):
            return []  # nothing to offer for unopened or non-file documents
        return list_actions(uri, doc.version, params)

    @server.feature(types.CODE_ACTION_RESOLVE)
    async def resolve(ls: QcnServer, action: types.CodeAction) -> types.CodeAction:
        try:
            uri, client_range, instruction, version = _action_data(action.data)
            action.edit = await rewrite_region(ls, uri, client_range, instruction, version)
        except EditRejected as exc:
            reason = str(exc)
            logger.info("code action not offered: %s", reason)
            if not _disabled_support(ls):
                raise RequestFailed(f"qcn-lsp: {reason}") from exc
            action.disabled = types.CodeActionDisabled(reason=reason)
        return action
