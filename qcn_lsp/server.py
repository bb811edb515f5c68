"""The one server object: settings, shared services and the protocol guard.

Features are registered on it by the composition point, `qcn_lsp.app.create_server`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.io_ import StdinAsyncReader, StdoutWriter, run_async
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from qcn_lsp import __version__
from qcn_lsp.audit import ProcessAudit
from qcn_lsp.errors import RequestFailed
from qcn_lsp.lifecycle import Lifecycle
from qcn_lsp.services import SHUTTING_DOWN, Services
from qcn_lsp.settings import Settings

logger = logging.getLogger(__name__)

InitializedListener = Callable[["QcnServer"], None]
PARSE_ERROR = -32700
INVALID_REQUEST = -32600


class _AnsweredRequest:
    """Stands in for a request that was already answered with an error while decoding."""

    jsonrpc = "answered"


class QcnProtocol(LanguageServerProtocol):
    """pygls' protocol, except that every request gets an answer.

    pygls 2.1 leaves some requests unanswered, and an editor waiting on one hangs:
    - params that cannot be deserialized: here InvalidParams (-32602) naming the method;
    - a missing or wrong `jsonrpc` member, and requests after `shutdown`: InvalidRequest
      (-32600), as LSP prescribes for the latter;
    - requests still running when `shutdown` cancels them: RequestFailed "server shutting
      down" rather than RequestCancelled, since the client cancelled nothing.
    """

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if "id" in data and "method" in data:
                detail = exc.__cause__ or exc
                self.answer(
                    data["id"],
                    exc.code,
                    f"invalid params for {data['method']}: {_first_line(detail)}",
                )
                return _AnsweredRequest()
            raise

    def handle_message(self, message: Any) -> None:
        if isinstance(message, _AnsweredRequest):
            return
        if isinstance(message, dict):  # no `jsonrpc` member: pygls left it unstructured
            if _is_request(message):
                self.answer(message["id"], INVALID_REQUEST, "not JSON-RPC 2.0: no `jsonrpc`")
            else:
                logger.warning("ignored a message without `jsonrpc`")
            return
        method = getattr(message, "method", None)
        if _is_request(message) and message.jsonrpc != self.VERSION:
            self.answer(message.id, INVALID_REQUEST, f"not JSON-RPC 2.0: {message.jsonrpc!r}")
            return
        if self._shutdown and method != types.EXIT and _is_request(message):
            self.answer(
                message.id, INVALID_REQUEST, f"{method}: the server is shut down (after `shutdown`)"
            )
            return
        super().handle_message(message)

    def _send_handler_result(self, future: Any, *, msg_id: Any) -> None:
        server = self._server
        if future.cancelled() and isinstance(server, QcnServer) and server.services.shutting_down:
            self._request_futures.pop(msg_id, None)
            self.answer(msg_id, RequestFailed.CODE, f"qcn-lsp: {SHUTTING_DOWN}")
            return
        super()._send_handler_result(future, msg_id=msg_id)

    def stop_requests(self) -> list[asyncio.Task[Any]]:
        """Cancel every handler still running but the current one (`shutdown`'s): each is
        answered "server shutting down" when it ends, before `shutdown`'s own reply if the
        caller waits for them (eglot kills the server right after that reply)."""
        current = asyncio.current_task()
        stopped: list[asyncio.Task[Any]] = []
        for msg_id, future in list(self._request_futures.items()):
            if (
                isinstance(future, asyncio.Task)
                and future is not current
                and msg_id != self.msg_id
                and not future.done()
            ):
                future.cancel()
                stopped.append(future)
        return stopped

    def answer(self, msg_id: Any, code: int, message: str) -> None:
        self._send_response(msg_id, error=types.ResponseError(code=code, message=message))


def _is_request(message: Any) -> bool:
    if isinstance(message, dict):
        return isinstance(message.get("id"), int | str) and isinstance(message.get("method"), str)
    return getattr(message, "id", None) is not None and getattr(message, "method", None) is not None


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
        self.lifecycle = Lifecycle(self)
        # Installed by the `qcn-lsp` command only (a hook lasts as long as its process).
        self.audit = ProcessAudit()

    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """Serve over stdio; when the client closes stdin without `exit`, stop as `exit`
        would (persist, bounded), instead of leaving the engine's threads running."""
        stop_event = self._stop_event = threading.Event()
        reader = StdinAsyncReader(stdin or sys.stdin.buffer, self.thread_pool)
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))

        async def serve() -> None:
            self.lifecycle.install_signal_handlers()
            await run_async(
                stop_event=stop_event,
                reader=reader,
                protocol=self.protocol,
                logger=logger,
                error_handler=self.report_server_error,
            )
            await self.lifecycle.finish("the client closed the connection")

        asyncio.run(serve())

    def stop_requests(self) -> list[asyncio.Task[Any]]:
        assert isinstance(self.protocol, QcnProtocol)
        return self.protocol.stop_requests()

    def report_server_error(self, error: Exception, source: Any) -> None:
        """What the client sent could not be read (not JSON, not a message): a JSON-RPC parse
        error and a log line, not an error box in the editor; other errors as pygls does."""
        if source is JsonRpcException:
            logger.warning("unreadable message from the client: %s", _first_line(error))
            if isinstance(error, json.JSONDecodeError | UnicodeDecodeError):
                assert isinstance(self.protocol, QcnProtocol)
                self.protocol.answer(None, PARSE_ERROR, f"parse error: {_first_line(error)}")
            return
        super().report_server_error(error, source)

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
        if changed:
            logger.info("settings changed: %s", ", ".join(sorted(changed)))
            self.services.settings_changed(previous)
