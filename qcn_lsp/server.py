"""The one server object: settings, shared services and the protocol guard.

Features are registered on it by the composition point, `qcn_lsp.app.create_server`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from qcn_lsp import __version__
from qcn_lsp.logs import use_level
from qcn_lsp.services import Services
from qcn_lsp.settings import Settings

logger = logging.getLogger(__name__)

InitializedListener = Callable[["QcnServer"], None]


class _AnsweredRequest:
    """Stands in for a request that was already answered with an error while decoding."""

    jsonrpc = "answered"


class QcnProtocol(LanguageServerProtocol):
    """pygls' protocol, except that every request gets an answer.

    pygls 2.1 drops requests whose params cannot be deserialized without answering them, so an
    editor waiting on one would hang. Here they get InvalidParams (-32602) naming the method.
    """

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if "id" in data and "method" in data:
                detail = exc.__cause__ or exc
                error = types.ResponseError(
                    code=exc.code,
                    message=f"invalid params for {data['method']}: {_first_line(detail)}",
                )
                self._send_response(data["id"], error=error)
                return _AnsweredRequest()
            raise

    def handle_message(self, message: Any) -> None:
        if isinstance(message, _AnsweredRequest):
            return
        super().handle_message(message)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


class QcnServer(LanguageServer):
    """qcn-lsp's language server: settings, services and the `initialized` listeners."""

    def __init__(self) -> None:
        super().__init__(
            name="qcn-lsp",
            version=__version__,
            protocol_cls=QcnProtocol,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
        )
        self.settings = Settings()
        self._initialized_listeners: list[InitializedListener] = []
        # The model backend and the workspace index: started once the client is initialized
        # (features/configuration.py), reloaded when settings that concern them change.
        self.services = Services(self)

    def on_initialized(self, listener: InitializedListener) -> None:
        """Call `listener(server)` once the client is initialized and its settings are pulled:
        the first moment requests to the client (e.g. dynamic registrations) are allowed."""
        self._initialized_listeners.append(listener)

    def client_initialized(self) -> None:
        for listener in self._initialized_listeners:
            listener(self)

    def apply_settings(self, raw: Any, source: str) -> None:
        """Merge `raw` into the settings, warn about what was ignored, reload what changed."""
        new, warnings = self.settings.merged(raw, source)
        for warning in warnings:
            logger.warning(warning)
            self.window_show_message(
                types.ShowMessageParams(
                    type=types.MessageType.Warning, message=f"qcn-lsp: {warning}"
                )
            )
        previous, self.settings = self.settings, new
        changed = new.changed_keys(previous)
        # The effective settings, in the editor's LSP log: the first thing to look at when
        # something behaves unexpectedly.
        self.window_log_message(
            types.LogMessageParams(
                type=types.MessageType.Info,
                message=f"qcn-lsp settings: {json.dumps(new.values, sort_keys=True)}",
            )
        )
        if "log.level" in changed:
            use_level(new.log.level)
        if changed:
            logger.info("settings changed: %s", ", ".join(sorted(changed)))
            self.services.settings_changed(previous)
