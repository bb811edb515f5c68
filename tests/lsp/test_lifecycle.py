"""How the server stops: `shutdown` during a prefill, `exit`, and clients that vanish.

The real server and engine on the tiny model, driven by a bare JSON-RPC peer (a client library
would not close stdin without `shutdown`, nor keep talking after it). How long each step takes
is measured by bench/shutdown.py and the editor tests, not asserted here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.lsp.helpers import RawLspProcess

INVALID_REQUEST = -32600
REQUEST_FAILED = -32803
# Long enough that the process surely had time; a hung server fails here, not by the CI timeout.
EXIT_TIMEOUT_S = 60


def source(functions: int) -> str:
    return "".join(
        f"def step_{n}(value):\n    return value * {n} + 1\n\n\n" for n in range(functions)
    )


def start(
    model: Path, workspace: Path, cache: Path, *, process_id: int | None = None, **options: Any
) -> RawLspProcess:
    server = RawLspProcess(log_file=cache.parent / f"server-{time.monotonic_ns()}.log")
    settings = {
        "model": {"path": str(model), "contextLength": 8192},
        "completion": {"maxTokens": 8, "debounceMs": 0},
        "cache": {"dir": str(cache)},
        **options,
    }
    server.request(
        "initialize",
        {
            "processId": process_id,
            "rootUri": workspace.as_uri(),
            "capabilities": {},
            "initializationOptions": settings,
        },
    )
    server.send({"method": "initialized", "params": {}})
    return server


def open_document(server: RawLspProcess, path: Path) -> str:
    uri = path.as_uri()
    server.open_document(uri, path.read_text())
    return uri


def status(server: RawLspProcess) -> dict[str, Any]:
    response = server.request("workspace/executeCommand", {"command": "qcn.status"})
    return response["result"]


def wait_ready(server: RawLspProcess) -> None:
    for _ in range(400):
        state = status(server)["engine"]["state"]
        if state == "ready":
            return
        assert "loading" in state or "not started" in state, state
        time.sleep(0.05)
    raise AssertionError("the model never loaded")


def completion_params(uri: str, line: int) -> dict[str, Any]:
    return {
        "textDocument": {"uri": uri},
        "position": {"line": line, "character": 0},
        "context": {"triggerKind": 1},  # invoked: errors are answered, not swallowed
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "steps.py").write_text(source(150))
    return root


def test_shutdown_during_a_prefill_answers_everything_honestly(
    tiny_model: Path, project: Path, tmp_path: Path
) -> None:
    server = start(tiny_model, project, tmp_path / "cache")
    uri = open_document(server, project / "steps.py")
    wait_ready(server)
    # Several prefills queued and running (each cancels the previous one of its document, so
    # they go to different documents).
    pending = []
    for n in range(3):
        copy = project / f"copy{n}.py"
        copy.write_text(source(150 - n))
        pending.append(
            server.send_request(
                "textDocument/inlineCompletion",
                completion_params(open_document(server, copy), 590),
            )
        )
    time.sleep(0.1)
    shutdown = server.send_request("shutdown", None)
    assert server.response(shutdown)["result"] is None
    for request_id in pending:
        answer = server.response(request_id)
        if "error" in answer:  # or a result, if the model was quicker than the shutdown
            assert answer["error"]["code"] == REQUEST_FAILED, answer
            assert answer["error"]["message"] == "qcn-lsp: server shutting down", answer
    # After `shutdown` every request is refused, as LSP prescribes, and still answered.
    late = server.request("textDocument/inlineCompletion", completion_params(uri, 10))
    assert late["error"]["code"] == INVALID_REQUEST, late
    server.send({"method": "exit"})
    assert server.proc.wait(timeout=EXIT_TIMEOUT_S) == 0


def test_exit_without_shutdown_exits_with_1(
    tiny_model: Path, project: Path, tmp_path: Path
) -> None:
    server = start(tiny_model, project, tmp_path / "cache")
    wait_ready(server)
    server.send({"method": "exit"})
    assert server.proc.wait(timeout=EXIT_TIMEOUT_S) == 1


def completed_once(server: RawLspProcess, uri: str, line: int) -> dict[str, Any]:
    answer = server.request("textDocument/inlineCompletion", completion_params(uri, line))
    assert "result" in answer, answer
    report = status(server)["lastRequest"]
    assert report is not None
    return report


def test_a_client_that_closes_stdin_leaves_its_state_for_the_next_server(
    tiny_model: Path, project: Path, tmp_path: Path
) -> None:
    """No `shutdown`, no `exit`: the server persists the state at the cursor and exits, and
    the next server (same cache, nothing locked) starts from it."""
    cache = tmp_path / "cache"
    server = start(tiny_model, project, cache)
    uri = open_document(server, project / "steps.py")
    wait_ready(server)
    cold = completed_once(server, uri, 590)
    assert cold["restoreKind"] == "none" and cold["prefilledTokens"] > 1024, cold
    assert server.proc.stdin is not None
    server.proc.stdin.close()
    assert server.proc.wait(timeout=EXIT_TIMEOUT_S) == 1
    assert any((cache / "state").iterdir())

    again = start(tiny_model, project, cache)
    uri = open_document(again, project / "steps.py")
    wait_ready(again)
    warm = completed_once(again, uri, 590)
    assert warm["restoreKind"] == "disk", warm
    assert warm["prefilledTokens"] < cold["prefilledTokens"] / 4, warm
    again.request("shutdown", None)
    again.send({"method": "exit"})
    assert again.proc.wait(timeout=EXIT_TIMEOUT_S) == 0


def test_the_server_exits_when_the_editor_process_is_gone(
    tiny_model: Path, project: Path, tmp_path: Path
) -> None:
    editor = subprocess.Popen(["sleep", "600"])
    server = start(tiny_model, project, tmp_path / "cache", process_id=editor.pid)
    wait_ready(server)
    editor.kill()
    editor.wait()
    # stdin stays open: only the parent watch can notice.
    assert server.proc.wait(timeout=EXIT_TIMEOUT_S) == 1


def test_sigterm_stops_the_server(tiny_model: Path, project: Path, tmp_path: Path) -> None:
    server = start(tiny_model, project, tmp_path / "cache")
    wait_ready(server)
    os.kill(server.proc.pid, signal.SIGTERM)
    assert server.proc.wait(timeout=EXIT_TIMEOUT_S) == 1
