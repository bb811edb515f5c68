"""`textDocument/completion`: the model's continuation as one popup item.

For clients without ghost text (Helix, older editors): the item's `textEdit` covers the word
being typed, so that clients filtering by word keep it. The shared `Completer` does the work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from qcn_lsp import completion_logic as logic

if TYPE_CHECKING:
    from qcn_lsp.completer import Answer, Completer, Cursor
    from qcn_lsp.server import QcnServer

TRIGGER_CHARACTERS = [".", "(", "[", ",", ":", "=", " "]


def register(server: QcnServer, completer: Completer) -> None:
    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=TRIGGER_CHARACTERS),
    )
    async def on_completion(
        ls: QcnServer, params: types.CompletionParams
    ) -> types.CompletionList | None:
        invoked = (
            params.context is None
            or params.context.trigger_kind == types.CompletionTriggerKind.Invoked
        )
        found = await completer.complete_at(
            params.text_document.uri, params.position, invoked=invoked
        )
        if found is None:
            return None
        cursor, answer = found
        if answer is None:
            return types.CompletionList(is_incomplete=True, items=[])
        return types.CompletionList(is_incomplete=True, items=[_popup_item(ls, cursor, answer)])


def _popup_item(ls: QcnServer, cursor: Cursor, answer: Answer) -> types.CompletionItem:
    start = logic.word_start(cursor.line_prefix)
    word = cursor.line_prefix[start:]
    document = ls.workspace.get_text_document(cursor.uri)
    start_position = document.position_codec.position_to_client_units(
        document.lines, types.Position(line=cursor.position.line, character=start)
    )
    new_text = word + answer.text
    first_line = new_text.strip().splitlines()[0] if new_text.strip() else new_text
    return types.CompletionItem(
        label=first_line[:80],
        kind=types.CompletionItemKind.Text,
        detail="qcn-lsp" + (" (typed ahead)" if answer.typed_ahead else ""),
        documentation=new_text,
        filter_text=new_text,
        sort_text="0",
        insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(
            range=types.Range(start=start_position, end=cursor.position), new_text=new_text
        ),
    )
