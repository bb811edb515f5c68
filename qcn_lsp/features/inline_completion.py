"""`textDocument/inlineCompletion` (LSP 3.18 ghost text), served by the shared Completer."""

from __future__ import annotations

from lsprotocol import types

from qcn_lsp.features.completion import completer_of
from qcn_lsp.server import QcnServer
from qcn_lsp.services import ServiceUnavailable


def register(server: QcnServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def on_inline_completion(
        ls: QcnServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList | None:
        completer = completer_of(ls)
        cursor = completer.cursor(params.text_document.uri, params.position)
        if cursor is None:
            return None
        invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        try:
            answer = await completer.complete(cursor, invoked=invoked)
        except ServiceUnavailable:
            if invoked:
                raise
            return None  # automatic ghost text stays quiet while the model loads
        if answer is None:
            return types.InlineCompletionList(items=[])
        here = types.Range(start=params.position, end=params.position)
        return types.InlineCompletionList(
            items=[types.InlineCompletionItem(insert_text=answer.text, range=here)]
        )
