"""`textDocument/inlineCompletion` (LSP 3.18 ghost text), served by the shared Completer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from qcn_lsp.completer import Completer
    from qcn_lsp.server import QcnServer


def register(server: QcnServer, completer: Completer) -> None:
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def on_inline_completion(
        ls: QcnServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList | None:
        invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        found = await completer.complete_at(
            params.text_document.uri, params.position, invoked=invoked
        )
        if found is None:
            return None
        _cursor, answer = found
        if answer is None:
            return types.InlineCompletionList(items=[])
        here = types.Range(start=params.position, end=params.position)
        return types.InlineCompletionList(
            items=[types.InlineCompletionItem(insert_text=answer.text, range=here)]
        )
