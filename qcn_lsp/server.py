"""The one server object: settings, shared services and the protocol guard.

Features are registered on it by the composition point, `qcn_lsp.app.create_server`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Generator
from concurrent.futures import Future
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, lsp_method

from qcn_lsp import __version__
from qcn_lsp.errors import RequestFailed
from qcn_lsp.logs import use_level
from qcn_lsp.services import Services
from qcn_lsp.settings import Settings
from qcn_lsp.text_sync import LspWorkspace

logger = logging.getLogger(__name__)

InitializedListener = Callable[["QcnServer"], None]
SYNC_KIND = types.TextDocumentSyncKind.Incremental


class _AnsweredRequest:
    """Stands in for a request that was already answered with an error while decoding."""

    jsonrpc = "answered"


class QcnProtocol(LanguageServerProtocol):
    """pygls' protocol, except that every request gets an answer and documents have LSP's lines.

    pygls 2.1 drops requests whose params cannot be deserialized without answering them, so an
    editor waiting on one would hang. Here they get InvalidParams (-32602) naming the method.
    """

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams) -> Generator[Any, Any, Any]:
        result = yield from super().lsp_initialize(params)
        # pygls creates a plain Workspace here, before any document is opened; ours cuts lines
        # only at LSP's line ends (qcn_lsp.text_sync).
        self._workspace = LspWorkspace.like(self.workspace, SYNC_KIND)
        return result

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

    def _send_handler_result(self, future: Future[Any], *, msg_id: Any) -> None:
        # Expected outcomes answered as errors (RequestFailed: nothing to offer, the model not
        # ready; InvalidParams: a bad request) are one log line each; pygls would log them as
        # ERROR tracebacks.
        error = None if future.cancelled() else future.exception()
        if isinstance(error, RequestFailed | JsonRpcInvalidParams):
            self._request_futures.pop(msg_id, None)
            level = logging.INFO if isinstance(error, RequestFailed) else logging.WARNING
            logger.log(level, "request %s answered with error %s: %s", msg_id, error.code, error)
            self._send_response(msg_id, error=error.to_response_error())
            return
        super()._send_handler_result(future, msg_id=msg_id)


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
            text_document_sync_kind=SYNC_KIND,
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
