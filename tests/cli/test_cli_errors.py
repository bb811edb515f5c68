"""Every mistake at the command line is one line saying what is wrong and what to do, with a
non-zero exit code: never a traceback."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from tests.cli.tools import one_line_error, run_cli
from tests.lsp.helpers import RawLspProcess, server_env


def test_make_test_model_into_paths_it_cannot_write(tmp_path: Path) -> None:
    one_line_error(run_cli("make-test-model", str(tmp_path)), "is a folder", "tiny.gguf")
    (tmp_path / "m.gguf").write_text("a file")
    one_line_error(
        run_cli("make-test-model", str(tmp_path / "m.gguf" / "x.gguf")), "is a file, not a folder"
    )
    one_line_error(run_cli("make-test-model", str(tmp_path / "no" / "m.gguf")), "mkdir -p")
    # A folder that exists but takes no new files.
    one_line_error(run_cli("make-test-model", "/proc/m.gguf"), "/proc", "choose a folder")
    assert not list(Path("/proc").glob(".m.gguf*"))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--tcp", "127.0.0.1:99999"], ["qcn-lsp:", "0 to 65535"]),
        (["--tcp", "localhost"], ["HOST:PORT"]),
        (["index", ".", "--bogus"], ["qcn-lsp index:", "--bogus", "qcn-lsp index --help"]),
        (["context", "a.py:1:1", "--budget", "0"], ["qcn-lsp context:", "1 to 262144"]),
        (["context", "a.py:1:1", "--budget", "-5"], ["qcn-lsp context:", "--budget"]),
        (["--log-level", "LOUD"], ["--log-level"]),
        (["nonsense"], ["invalid choice"]),
    ],
)
def test_usage_errors_name_the_command_and_its_help(args: list[str], words: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    one_line_error(result, *words, "--help")
    assert "usage:" not in result.stderr


def test_a_port_in_use_is_one_line() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        line = one_line_error(run_cli("--tcp", f"127.0.0.1:{port}"), f"127.0.0.1:{port}", "in use")
    assert "--tcp 127.0.0.1:0" in line


def _lsp_message(body: dict[str, Any]) -> bytes:
    data = json.dumps({"jsonrpc": "2.0", **body}).encode()
    return b"Content-Length: %d\r\n\r\n" % len(data) + data


def _read_message(stream: BinaryIO) -> dict[str, Any]:
    length = 0
    while (line := stream.readline().strip()) != b"":
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    result: dict[str, Any] = json.loads(stream.read(length))
    return result


def _request(stream: BinaryIO, id_: int, method: str, params: Any) -> dict[str, Any]:
    stream.write(_lsp_message({"id": id_, "method": method, "params": params}))
    stream.flush()
    while (answer := _read_message(stream)).get("id") != id_ or "method" in answer:
        pass  # notifications and requests from the server
    return answer


def test_tcp_says_where_it_listens_and_serves_there() -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "qcn_lsp", "--tcp", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=server_env(),
    )
    try:
        assert server.stderr is not None
        line = server.stderr.readline()
        found = re.search(r"serving LSP on 127\.0\.0\.1:(\d+)", line)
        assert found, line
        port = int(found.group(1))
        assert port != 0
        # The line comes just before the server listens: try for a moment.
        for _ in range(200):
            try:
                connection = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
        else:
            pytest.fail(f"nothing listens on {port}")
        initialize = {"processId": None, "rootUri": None, "capabilities": {}}
        with connection, connection.makefile("rwb") as stream:
            assert "capabilities" in _request(stream, 1, "initialize", initialize)["result"]
            _request(stream, 2, "shutdown", None)
            stream.write(_lsp_message({"method": "exit"}))
            stream.flush()
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()
        server.wait()


def test_piped_input_that_is_not_lsp_is_told_what_the_server_speaks() -> None:
    line = one_line_error(run_cli(stdin="hello\n"), "speaks LSP", "stdin/stdout", "'hello'")
    assert "editors/README.md" in line
    assert run_cli(stdin="hello\n").returncode == 2


def test_stdio_flag_that_client_transports_append_serves_lsp() -> None:
    # vscode-languageclient's stdio transport launches `qcn-lsp --stdio`.
    peer = RawLspProcess("--stdio", "--log-level", "WARNING")
    try:
        answer = peer.initialize()
        assert answer["result"]["serverInfo"]["name"] == "qcn-lsp"
        assert peer.close() == 0
    finally:
        peer.proc.kill()


def test_stdio_and_tcp_together_are_one_line() -> None:
    one_line_error(run_cli("--stdio", "--tcp", "127.0.0.1:0"), "--stdio", "--tcp")
