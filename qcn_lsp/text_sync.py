"""The server's copy of open documents, cut into lines where LSP cuts them.

LSP line ends are only `\\r\\n`, `\\r` and `\\n`. pygls 2.1 cuts lines with `str.splitlines`,
which also breaks at `\\x0b \\x0c \\x1c-\\x1e \\x85 \\u2028 \\u2029`: after a form feed (PEP 8 page
breaks) every position, and so every incremental change, lands a line off. `LspWorkspace`
(the workspace `QcnProtocol` gives pygls) creates `LspTextDocument`s, whose `lines`, positions
and incremental changes follow LSP; everything in qcn_lsp that needs lines or positions goes
through them or through `lsp_lines`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any
from urllib.parse import unquote

from lsprotocol import types
from pygls.workspace import PositionCodec, TextDocument, Workspace
from pygls.workspace.position_codec import ServerTextPosition

# Split after every `\n`, and after every `\r` that does not start a `\r\n`.
_AFTER_LINE_END = re.compile(r"(?<=\n)|(?<=\r)(?!\n)")


def lsp_lines(text: str) -> tuple[str, ...]:
    """`text` cut after each LSP line end, the ends kept (`str.splitlines(True)` for LSP)."""
    if not text:
        return ()
    lines = _AFTER_LINE_END.split(text)
    if not lines[-1]:
        lines.pop()  # the text ends with a line end
    return tuple(lines)


def line_content(line: str) -> str:
    """One of `lsp_lines`' lines without its line end."""
    if line.endswith("\r\n"):
        return line[:-2]
    if line.endswith(("\n", "\r")):
        return line[:-1]
    return line


def line_end_of(text: str) -> str:
    """The line end a text uses (its first one); `\\n` for a text without any."""
    match = re.search(r"\r\n|\r|\n", text)
    return match.group() if match else "\n"


# The version the request's document had when the request arrived. A request's handler runs
# after the notifications that followed it (the didChange of the next keystroke), so its
# position may be for a text the document no longer has.
VERSION_AT_ARRIVAL: ContextVar[int | None] = ContextVar("version_at_arrival", default=None)


def open_text_document(workspace: Workspace, uri: str) -> TextDocument | None:
    """The open document `uri` names, however the client percent-encoded it (pygls keys its
    documents by the decoded URI; VS Code sends `file:///a%20b.py`)."""
    documents: dict[str, TextDocument] = workspace.text_documents
    return documents.get(unquote(uri))


class LspPositionCodec(PositionCodec):
    """pygls' codec, except that a client position never lands inside or after a line end.

    LSP: a character beyond the line's length means the line's end, and a line beyond the
    document means its end. (pygls 2.1 counts the line end as part of the line, and changes
    the request's position object while clamping it.)
    """

    def position_from_client_units(
        self, lines: Sequence[str], position: types.Position
    ) -> ServerTextPosition:
        if position.line >= len(lines):
            return _end_of(lines)
        content = line_content(lines[position.line])
        units = 0
        for index, char in enumerate(content):
            if units >= position.character:
                return ServerTextPosition(position.line, index)
            units += self.impl.code_units_for_char(char)
        return ServerTextPosition(position.line, len(content))


def _end_of(lines: Sequence[str]) -> ServerTextPosition:
    """The end of the document: on the empty last line after a final line end."""
    if not lines:
        return ServerTextPosition(0, 0)
    last = lines[-1]
    content = line_content(last)
    if len(content) < len(last):
        return ServerTextPosition(len(lines), 0)
    return ServerTextPosition(len(lines) - 1, len(content))


class LspTextDocument(TextDocument):
    """A pygls TextDocument with LSP's lines (cached per text) and offset-based changes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lines_of: str | None = None
        self._lines: tuple[str, ...] = ()

    @property
    def lines(self) -> tuple[str, ...]:
        source = self.source
        if source is not self._lines_of:
            self._lines = lsp_lines(source)
            self._lines_of = source
        return self._lines

    def _apply_incremental_change(self, change: types.TextDocumentContentChangePartial) -> None:
        server_range = self.range_from_client_units(change.range)
        start = self.offset_at_server_position(server_range.start)
        end = max(start, self.offset_at_server_position(server_range.end))
        source = self.source
        self._source = source[:start] + change.text + source[end:]


class LspWorkspace(Workspace):
    """pygls' Workspace, creating `LspTextDocument`s that share one `LspPositionCodec`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._position_codec = LspPositionCodec(encoding=self.position_encoding)

    @classmethod
    def like(cls, workspace: Workspace, sync_kind: types.TextDocumentSyncKind) -> LspWorkspace:
        """A new, empty LspWorkspace with `workspace`'s root, folders and position encoding."""
        return cls(
            workspace.root_uri,
            sync_kind,
            list(workspace.folders.values()),
            workspace.position_encoding,
        )

    def _create_text_document(
        self,
        doc_uri: str,
        source: str | None = None,
        version: int | None = None,
        language_id: str | None = None,
    ) -> TextDocument:
        return LspTextDocument(
            doc_uri,
            source=source,
            version=version,
            language_id=language_id,
            sync_kind=self._sync_kind,
            position_codec=self._position_codec,
        )
