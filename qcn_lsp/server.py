"""The one server object: settings, shared services and the protocol guard.

Features are registered on it by the composition point, `qcn_lsp.app.create_server`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from collections.abc import Callable, Generator
from concurrent.futures import Future
from typing import Any, BinaryIO

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.io_ import StdinAsyncReader, StdoutWriter, run_async
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, lsp_method

from qcn_lsp import __version__
from qcn_lsp.audit import ProcessAudit
from qcn_lsp.errors import RequestFailed
from qcn_lsp.lifecycle import Lifecycle
from qcn_lsp.logs import use_level
from qcn_lsp.services import SHUTTING_DOWN, Services
from qcn_lsp.settings import Settings
from qcn_lsp.text_sync import VERSION_AT_ARRIVAL, LspWorkspace, open_text_document

logger = logging.getLogger(__name__)

InitializedListener = Callable[["QcnServer"], None]
SYNC_KIND = types.TextDocumentSyncKind.Incremental
PARSE_ERROR = -32700
INVALID_REQUEST = -32600


class QcnProtocol(LanguageServerProtocol):
    """pygls' protocol, except that every request gets an answer, only requests do, and
    documents have LSP's lines.

    pygls 2.1 leaves some requests unanswered, and an editor waiting on one hangs:
    - params that cannot be deserialized: here InvalidParams (-32602) naming the method;
    - a request without `params` (JSON-RPC allows it): an unknown method is MethodNotFound,
      a known one needing params InvalidParams, not an internal error;
    - a missing or wrong `jsonrpc` member, a batch or a non-object message, a second
      `initialize`, and requests after `shutdown`: InvalidRequest (-32600), as LSP prescribes;
    - requests still running when `shutdown` cancels them: RequestFailed "server shutting
      down" rather than RequestCancelled, since the client cancelled nothing.
    pygls also structured every nested object that looked like a message (json.loads'
    object_hook sees them all) and answered it: here only the message itself is read as one.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._initialize_seen = False
        self._client_requests: set[Any] = set()  # ids of the client's requests being handled

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams) -> Generator[Any, Any, Any]:
        result = yield from super().lsp_initialize(params)
        # pygls creates a plain Workspace here, before any document is opened; ours cuts lines
        # only at LSP's line ends (qcn_lsp.text_sync).
        self._workspace = LspWorkspace.like(self.workspace, SYNC_KIND)
        return result

    def structure_message(self, data: dict[str, Any]) -> Any:
        # The object_hook of json.loads, called for every object innermost first: keep them
        # as data; handle_message structures the message as a whole.
        return data

    def handle_message(self, message: Any) -> None:
        if not isinstance(message, dict):
            kind = "batches are" if isinstance(message, list) else "a JSON value is"
            self.answer(None, INVALID_REQUEST, f"not a JSON-RPC message: {kind} not supported")
            return
        request = _is_request(message)
        if message.get("jsonrpc") != self.VERSION:
            if request:
                self.answer(
                    message["id"], INVALID_REQUEST, "not JSON-RPC 2.0: `jsonrpc` must be 2.0"
                )
            else:
                logger.warning("ignored a message that is not JSON-RPC 2.0")
            return
        method = message.get("method")
        if request and self._shutdown and method != types.EXIT:
            self.answer(
                message["id"],
                INVALID_REQUEST,
                f"{method}: the server is shut down (after `shutdown`)",
            )
            return
        if request and method == types.INITIALIZE:
            if self._initialize_seen:
                self.answer(message["id"], INVALID_REQUEST, "initialize may be sent only once")
                return
            self._initialize_seen = True
        if isinstance(method, str) and "params" not in message:
            message = {**message, "params": None}
        try:
            structured = super().structure_message(message)
        except JsonRpcException as exc:
            if request:
                detail = exc.__cause__ or exc
                self.answer(
                    message["id"],
                    exc.code,
                    f"invalid params for {method}: {_first_line(detail)}",
                )
            else:
                logger.warning(
                    "ignored an unreadable %s: %s", method or "message", _first_line(exc)
                )
            return
        super().handle_message(structured)

    def _handle_request(self, msg_id: Any, method: Any, params: Any, *args: Any) -> None:
        self._client_requests.add(msg_id)
        # The handler's task copies this context when pygls creates it, here.
        arrival = VERSION_AT_ARRIVAL.set(self._document_version(params))
        try:
            super()._handle_request(msg_id, method, params, *args)
        finally:
            VERSION_AT_ARRIVAL.reset(arrival)
            if msg_id not in self._request_futures:  # answered at once (an unknown method...)
                self._client_requests.discard(msg_id)

    def _document_version(self, params: Any) -> int | None:
        uri = getattr(getattr(params, "text_document", None), "uri", None)
        if not isinstance(uri, str) or self._workspace is None:
            return None
        document = open_text_document(self.workspace, uri)
        return None if document is None else document.version

    def _execute_handler(self, msg_id: Any, *args: Any, **kwargs: Any) -> None:
        super()._execute_handler(msg_id, *args, **kwargs)
        # pygls forgets a request's future when it answers it, but never a notification's:
        # one entry per didChange, kept for the life of the process. Forgotten on the next
        # loop turn: a concurrent future runs its callbacks inside cancel(), and pygls cancels
        # while it iterates the table.
        future = self._request_futures.get(msg_id)
        if future is not None:
            loop = asyncio.get_running_loop()
            future.add_done_callback(
                lambda done: loop.call_soon_threadsafe(self._forget, msg_id, done)
            )

    def _forget(self, msg_id: Any, future: Any) -> None:
        if self._request_futures.get(msg_id) is future:
            del self._request_futures[msg_id]

    def _send_handler_result(self, future: Future[Any], *, msg_id: Any) -> None:
        self._client_requests.discard(msg_id)
        server = self._server
        if future.cancelled() and isinstance(server, QcnServer) and server.services.shutting_down:
            self._request_futures.pop(msg_id, None)
            self.answer(msg_id, RequestFailed.CODE, f"qcn-lsp: {SHUTTING_DOWN}")
            return
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

    def stop_requests(self) -> list[asyncio.Task[Any]]:
        """Cancel every handler still running but the current one (`shutdown`'s): each is
        answered "server shutting down" when it ends, before `shutdown`'s own reply if the
        caller waits for them (eglot kills the server right after that reply)."""
        current = asyncio.current_task()
        stopped: list[asyncio.Task[Any]] = []
        for msg_id, future in list(self._request_futures.items()):
            if (
                msg_id in self._client_requests  # not notification handlers (`initialized`)
                and isinstance(future, asyncio.Task)
                and future is not current
                and msg_id != self.msg_id
                and not future.done()
            ):
                future.cancel()
                stopped.append(future)
        return stopped

    def answer(self, msg_id: Any, code: int, message: str) -> None:
        self._send_response(msg_id, error=types.ResponseError(code=code, message=message))


def _is_request(message: dict[str, Any]) -> bool:
    return isinstance(message.get("id"), int | str) and isinstance(message.get("method"), str)


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
        self.lifecycle = Lifecycle(self)
        # Installed by the `qcn-lsp` command only (a hook lasts as long as its process).
        self.audit = ProcessAudit()

    def start_io(
        self,
        stdin: BinaryIO | None = None,
        stdout: BinaryIO | None = None,
        *,
        ended: Callable[[], int | None] = lambda: None,
    ) -> None:
        """Serve over stdio; when the client closes stdin without `exit`, stop as `exit`
        would (persist, bounded), instead of leaving the engine's threads running. `ended`
        runs when the input ends and may choose the exit code (None: `exit`'s)."""
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
            await self.lifecycle.finish("the client closed the connection", ended())

        asyncio.run(serve())

    def stop_requests(self) -> list[asyncio.Task[Any]]:
        assert isinstance(self.protocol, QcnProtocol)
        return self.protocol.stop_requests()

    def tracked_handlers(self) -> int:
        """Handlers the protocol tracks: requests and notifications still running."""
        return len(self.protocol._request_futures)

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
        if "log.level" in changed:
            use_level(new.log.level)
        if changed:
            logger.info("settings changed: %s", ", ".join(sorted(changed)))
            self.services.settings_changed(previous)
