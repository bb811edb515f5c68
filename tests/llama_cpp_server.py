"""A real OpenAI-compatible server for the remote-backend tests: llama-cpp-python's
`llama_cpp.server` (the `[server]` extra of the pinned version) on a free loopback port,
serving a generated test model."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

START_TIMEOUT_S = 60.0
N_CTX = 4096
MODEL_ALIAS = "tiny-test-model"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LlamaCppServer:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    api_key: str | None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: the server dies mid-request, as a crash would."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def wait_for_output(self, text: str, timeout: float = 30.0, *, after: int = 0) -> bool:
        """Whether the server's output shows `text` more than `after` times within
        `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.output().count(text) > after:
                return True
            time.sleep(0.1)
        return False


@contextlib.contextmanager
def llama_cpp_server(
    model: Path, log_dir: Path, *, api_key: str | None = None, alias: str = MODEL_ALIAS
) -> Iterator[LlamaCppServer]:
    """Start the server and wait until /v1/models answers; killed on exit."""
    port = free_port()
    log = log_dir / f"llama_cpp_server_{port}.log"
    env = {k: v for k, v in os.environ.items() if k != "API_KEY"}
    if api_key is not None:
        env["API_KEY"] = api_key  # pydantic-settings reads it: the key stays off the argv
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        alias,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(N_CTX),
        "--chat_format",
        "chatml",
        # A stream left running would hold the server's one lock: the cancellation tests
        # see whether a closed stream really stops it.
        "--interrupt_requests",
        "False",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**env, "PYTHONUNBUFFERED": "1"}
        )
    server = LlamaCppServer(process, port, log, api_key)
    try:
        _wait_until_up(server)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _wait_until_up(server: LlamaCppServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    headers = {"Authorization": f"Bearer {server.api_key}"} if server.api_key else {}
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited:\n{server.output()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.base_url}/models", headers=headers, timeout=2).is_success:
                return
        time.sleep(0.2)
    raise RuntimeError(f"llama_cpp.server did not start:\n{server.output()[-2000:]}")
