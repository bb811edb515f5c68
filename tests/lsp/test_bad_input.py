"""Every request gets a result or a JSON-RPC error, and the server survives all of it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lsp.helpers import RawLspProcess

INVALID_PARAMS = -32602
METHOD_NOT_FOUND = -32601


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="module")
def server(workspace: Path) -> Iterator[RawLspProcess]:
    process = RawLspProcess()
    try:
        # With a workspace folder, so that resolve gets past the path checks to the region.
        process.request(
            "initialize",
            {"processId": None, "rootUri": workspace.as_uri(), "capabilities": {}},
        )
        process.send({"method": "initialized", "params": {}})
        yield process
    finally:
        assert process.close() == 0


def open_document(server: RawLspProcess, uri: str, text: str) -> None:
    server.open_document(uri, text)


def code_action(uri: str, start: tuple[int, int], end: tuple[int, int]) -> dict[str, Any]:
    return {
        "textDocument": {"uri": uri},
        "range": {
            "start": {"line": start[0], "character": start[1]},
            "end": {"line": end[0], "character": end[1]},
        },
        "context": {
            "diagnostics": [
                {
                    "range": {
                        "start": {"line": start[0], "character": start[1]},
                        "end": {"line": end[0], "character": end[1]},
                    },
                    "message": "bad",
                }
            ]
        },
    }


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("textDocument/codeAction", "not an object"),
        ("textDocument/codeAction", {"textDocument": {"uri": 5}}),
        ("codeAction/resolve", 5),
        ("codeAction/resolve", {"data": {}}),  # no title
        ("workspace/executeCommand", [1, 2]),
        ("workspace/executeCommand", {"arguments": []}),
    ],
)
def test_undecodable_params_get_invalid_params(
    server: RawLspProcess, method: str, params: Any
) -> None:
    response = server.request(method, params)
    assert response["error"]["code"] == INVALID_PARAMS, response


def test_unknown_method_and_command(server: RawLspProcess) -> None:
    assert server.request("qcn/noSuchThing", {})["error"]["code"] == METHOD_NOT_FOUND
    response = server.request("workspace/executeCommand", {"command": "qcn.nope", "arguments": []})
    assert "qcn.nope" in response["error"]["message"]


@pytest.mark.parametrize(
    "uri",
    ["untitled:Untitled-1", "file:///no/such/file.py", "https://example.com/a.py", "", "%%%"],
)
def test_unopened_and_non_file_uris(server: RawLspProcess, uri: str) -> None:
    response = server.request("textDocument/codeAction", code_action(uri, (0, 0), (0, 1)))
    assert "result" in response and not response["result"]


def test_out_of_range_and_split_surrogate_positions(server: RawLspProcess, workspace: Path) -> None:
    uri = (workspace / "emoji.py").as_uri()
    open_document(server, uri, 's = "😀😀"\nx = 1\n')
    for start, end in [((0, 6), (0, 7)), ((99, 0), (1_000_000, 5)), ((1, 500), (0, 0))]:
        listed = server.request("textDocument/codeAction", code_action(uri, start, end))
        assert listed["result"], listed
        # Resolve runs the checks before any model work: an error or a result, never silence.
        resolved = server.request("codeAction/resolve", listed["result"][0])
        assert "error" in resolved or "result" in resolved
    negative = server.request("textDocument/codeAction", code_action(uri, (-1, 0), (0, -5)))
    assert negative["error"]["code"] == INVALID_PARAMS


@pytest.mark.parametrize("method", ["textDocument/inlineCompletion", "textDocument/completion"])
def test_a_position_the_next_keystroke_removed_is_answered_empty(
    server: RawLspProcess, workspace: Path, method: str
) -> None:
    """The request and the next didChange (an undo that removes the request's line) arrive
    together, so the handler runs after the change: its position is for an older text, and
    its answer is empty, not an invalid-position error."""
    uri = (workspace / f"undone-{method.rsplit('/', 1)[1]}.py").as_uri()
    open_document(server, uri, "x = 1\ntotal = compute(value)  # running sum\n")
    request_id = 1000 + len(method)
    position = {"line": 1, "character": 37}  # the end of the line
    request = {
        "id": request_id,
        "method": method,
        "params": {
            "textDocument": {"uri": uri},
            "position": position,
            "context": {"triggerKind": 2},
        },
    }
    undo = {
        "method": "textDocument/didChange",
        "params": {
            "textDocument": {"uri": uri, "version": 2},
            "contentChanges": [
                {
                    "range": {
                        "start": {"line": 1, "character": 0},
                        "end": {"line": 2, "character": 0},
                    },
                    "text": "",
                }
            ],
        },
    }
    bodies = [json.dumps({"jsonrpc": "2.0", **m}).encode() for m in (request, undo)]
    assert server.proc.stdin is not None
    server.proc.stdin.write(b"".join(b"Content-Length: %d\r\n\r\n" % len(b) + b for b in bodies))
    server.proc.stdin.flush()
    response = server.response(request_id)
    assert "error" not in response, response


def test_huge_and_binary_documents(server: RawLspProcess, workspace: Path) -> None:
    huge_uri = (workspace / "huge.py").as_uri()
    open_document(server, huge_uri, "x = 1\n" * 400_000)
    binary_uri = (workspace / "blob.py").as_uri()
    open_document(server, binary_uri, "\x00\x01\x02\ufffd" * 1000)
    for uri in (huge_uri, binary_uri):
        listed = server.request("textDocument/codeAction", code_action(uri, (0, 0), (3, 0)))
        assert listed["result"]
        resolved = server.request("codeAction/resolve", listed["result"][-1])
        assert "error" in resolved or "result" in resolved
    whole = server.request("textDocument/codeAction", code_action(huge_uri, (0, 0), (400_000, 0)))
    resolved = server.request("codeAction/resolve", whole["result"][-1])
    assert "too large" in resolved["error"]["message"]


def test_malformed_notifications_are_survived(server: RawLspProcess, workspace: Path) -> None:
    uri = (workspace / "never_opened.py").as_uri()
    change = {"range": {"start": {"line": 5, "character": 0}, "end": {"line": 9, "character": 0}}}
    for method, params in [
        ("textDocument/didOpen", "x"),
        ("textDocument/didOpen", {"textDocument": {"uri": uri}}),
        (
            "textDocument/didChange",
            {
                "textDocument": {"uri": uri, "version": 2},
                "contentChanges": [{**change, "text": "y"}],
            },
        ),
        ("textDocument/didClose", {"textDocument": {"uri": uri}}),
        ("window/workDoneProgress/cancel", {"token": "no-such-token"}),
        ("$/cancelRequest", {"id": 123456}),
    ]:
        server.send({"method": method, "params": params})
    response = server.request("textDocument/codeAction", code_action(uri, (0, 0), (0, 1)))
    assert "result" in response


def test_forged_resolve_data(server: RawLspProcess) -> None:
    for data in [None, 5, {"uri": "file:///x.py"}, {"uri": 1, "range": "x", "instruction": 2}]:
        response = server.request("codeAction/resolve", {"title": "forged", "data": data})
        assert "not" in response["error"]["message"], response


def test_server_still_answers_after_all_of_it(server: RawLspProcess, workspace: Path) -> None:
    uri = (workspace / "ok.py").as_uri()
    open_document(server, uri, "x = 1\n")
    assert server.request("textDocument/codeAction", code_action(uri, (0, 0), (0, 1)))["result"]
    assert server.proc.poll() is None
