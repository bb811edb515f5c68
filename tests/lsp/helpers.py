"""Drive the real `qcn-lsp` process as editors do: a pytest-lsp session, a bare JSON-RPC peer,
and the small steps every LSP test repeats (open, change, qcn.status, wait for the model)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

SETTINGS_PREFIX = "qcn-lsp settings: "
ResultT = TypeVar("ResultT")
REPO_ROOT = Path(__file__).resolve().parents[2]


def server_env(**extra: str) -> dict[str, str]:
    # pytest-lsp replaces the whole environment: start from ours.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("QCN_MODEL", None)
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def lsp_session(
    *,
    profile: str = "visual_studio_code",
    initialization_options: Any = None,
    configuration: dict[str, Any] | None = None,
    workspace: Path | None = None,
    env: dict[str, str] | None = None,
    server_args: Sequence[str] = (),
) -> AsyncIterator[tuple[LanguageClient, types.InitializeResult]]:
    """A started, initialized client session with the real server; shut down on exit."""
    config = ClientServerConfig(
        # INFO, not DEBUG: pytest-lsp forwards stderr line by line with asyncio's 64 KiB line
        # limit, and pygls logs whole message bodies at DEBUG.
        server_command=[sys.executable, "-m", "qcn_lsp", "--log-level", "INFO", *server_args],
        server_env=server_env(**(env or {})),
    )
    client = await config.start()
    assert isinstance(client, LanguageClient)
    if configuration is not None:
        client.set_configuration(configuration)
    root_uri = workspace.as_uri() if workspace else None
    folders = (
        [types.WorkspaceFolder(uri=workspace.as_uri(), name=workspace.name)] if workspace else None
    )
    try:
        result = await client.initialize_session(
            types.InitializeParams(
                capabilities=client_capabilities(profile),
                initialization_options=initialization_options,
                root_uri=root_uri,
                workspace_folders=folders,
            )
        )
        yield client, result
    finally:
        # Always shut the server down (a failed assertion included): stopping a client whose
        # server never got `exit` waits forever.
        try:
            await asyncio.wait_for(client.shutdown_session(), 10)
        finally:
            await client.stop()


async def effective_settings(client: LanguageClient, **expected: Any) -> dict[str, Any]:
    """The server's latest settings report (window/logMessage) once it shows `expected`.

    Keys in `expected` use `__` for dots: completion__maxTokens=33.
    """
    want = {key.replace("__", "."): value for key, value in expected.items()}
    settings: dict[str, Any] = {}
    for _ in range(200):
        for message in reversed(client.log_messages):
            if message.message.startswith(SETTINGS_PREFIX):
                settings = json.loads(message.message.removeprefix(SETTINGS_PREFIX))
                break
        if settings and all(settings.get(k) == v for k, v in want.items()):
            return settings
        await asyncio.sleep(0.05)
    raise AssertionError(f"server settings never showed {want}; last report: {settings}")


def open_document(
    client: LanguageClient, uri: str, text: str, version: int = 1, language_id: str = "python"
) -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id=language_id, version=version, text=text
            )
        )
    )


def open_file(client: LanguageClient, path: Path, text: str | None = None) -> str:
    """Open `path` with `text` (its content on disk by default); returns its URI."""
    uri = path.as_uri()
    open_document(client, uri, path.read_text() if text is None else text)
    return uri


def change(
    client: LanguageClient,
    uri: str,
    version: int,
    start: types.Position,
    end: types.Position,
    text: str,
) -> None:
    """An incremental didChange replacing start..end with `text`."""
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=start, end=end), text=text
                )
            ],
        )
    )


def insert(client: LanguageClient, uri: str, version: int, at: types.Position, text: str) -> None:
    change(client, uri, version, at, at, text)


def inline_params(uri: str, position: types.Position, invoked: bool = True) -> Any:
    kind = (
        types.InlineCompletionTriggerKind.Invoked
        if invoked
        else types.InlineCompletionTriggerKind.Automatic
    )
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=position,
        context=types.InlineCompletionContext(trigger_kind=kind),
    )


def popup_params(uri: str, position: types.Position, trigger: str | None = None) -> Any:
    """A popup completion request: invoked, or typed `trigger` character."""
    context = (
        types.CompletionContext(
            trigger_kind=types.CompletionTriggerKind.TriggerCharacter, trigger_character=trigger
        )
        if trigger
        else types.CompletionContext(trigger_kind=types.CompletionTriggerKind.Invoked)
    )
    return types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=position, context=context
    )


def record_progress(client: LanguageClient) -> list[Any]:
    """Every qcn/completionProgress notification the client receives from now on."""
    received: list[Any] = []

    @client.feature("qcn/completionProgress")
    def on_progress(params: Any) -> None:
        received.append(params)

    return received


async def status(client: LanguageClient) -> dict[str, Any]:
    """The server's `qcn.status`."""
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="qcn.status", arguments=[])
    )
    assert isinstance(result, dict)
    return result


async def until_status(
    client: LanguageClient,
    predicate: Callable[[dict[str, Any]], bool],
    *,
    tries: int = 240,
    every_s: float = 0.25,
) -> dict[str, Any]:
    """`qcn.status` once `predicate` holds for it."""
    state: dict[str, Any] = {}
    for _ in range(tries):
        state = await status(client)
        if predicate(state):
            return state
        await asyncio.sleep(every_s)
    raise AssertionError(f"status never matched: {state}")


async def until_ready(client: LanguageClient) -> dict[str, Any]:
    """`qcn.status` once the model is loaded; fails at once if loading failed."""

    def ready(state: dict[str, Any]) -> bool:
        engine = state["engine"]["state"]
        assert engine == "ready" or "loading" in engine or "not started" in engine, state
        return engine == "ready"

    return await until_status(client, ready)


async def once_indexed(call: Callable[[], Awaitable[ResultT]], tries: int = 120) -> ResultT:
    """`call()`, again while the server answers that the workspace index is still building
    (it builds in the background)."""
    for _ in range(tries):
        try:
            return await call()
        except JsonRpcException as exc:
            if "index" not in str(exc):
                raise
        await asyncio.sleep(0.25)
    raise AssertionError("the workspace index never became ready")


class RawLspProcess:
    """A bare JSON-RPC stdio peer, for sending what no well-behaved client library would."""

    def __init__(
        self,
        *args: str,
        stderr: int = subprocess.DEVNULL,
        env: dict[str, str] | None = None,
        log_file: Path | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        log = ["--log-level", "INFO", "--log-file", str(log_file)] if log_file else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qcn_lsp", *(args or ("--log-level", "WARNING")), *log],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=server_env(**(env or {})),
            preexec_fn=preexec_fn,
        )
        # Notifications from the server, in order (window/showMessage, progress, ...).
        self.notifications: list[dict[str, Any]] = []
        self._next_id = 0
        self.responses: dict[Any, dict[str, Any]] = {}

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        length = 0
        while (line := self.proc.stdout.readline().strip()) != b"":
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return json.loads(self.proc.stdout.read(length))

    def request(self, method: str, params: Any) -> dict[str, Any]:
        """Send a request and return its response; notifications meanwhile are kept in
        `notifications`, server requests skipped."""
        return self.response(self.send_request(method, params))

    def send_request(self, method: str, params: Any) -> int:
        """Send a request without waiting; returns its id."""
        self._next_id += 1
        self.send({"id": self._next_id, "method": method, "params": params})
        return self._next_id

    def open_document(self, uri: str, text: str, language_id: str = "python") -> None:
        """textDocument/didOpen at version 1."""
        self.send(
            {
                "method": "textDocument/didOpen",
                "params": {
                    "textDocument": {
                        "uri": uri,
                        "languageId": language_id,
                        "version": 1,
                        "text": text,
                    }
                },
            }
        )

    def response(self, request_id: int) -> dict[str, Any]:
        """The response to `request_id`; responses to other requests read meanwhile are kept."""
        while request_id not in self.responses:
            self._keep(self.read())
        return self.responses.pop(request_id)

    def notification(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first notification (seen or next) for which `predicate` holds."""
        while True:
            for message in self.notifications:
                if predicate(message):
                    return message
            self._keep(self.read())

    def _keep(self, message: dict[str, Any]) -> None:
        if "id" in message and "method" not in message:
            self.responses[message["id"]] = message
        elif "method" in message and "id" not in message:
            self.notifications.append(message)

    def initialize(self, initialization_options: Any = None, **params: Any) -> dict[str, Any]:
        """`params`: further InitializeParams fields (e.g. rootUri)."""
        response = self.request(
            "initialize",
            {
                "processId": None,
                "rootUri": None,
                "capabilities": {},
                "initializationOptions": initialization_options,
                **params,
            },
        )
        self.send({"method": "initialized", "params": {}})
        return response

    def close(self) -> int:
        self.request("shutdown", None)
        self.send({"method": "exit"})
        return self.proc.wait(timeout=10)
