"""A bare JSON-RPC stdio peer, for sending what no well-behaved client library would send."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.lsp_helpers import server_env


class RawLspProcess:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qcn_lsp", "--log-level", "WARNING"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=server_env(),
        )
        self._next_id = 0

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
        """Send a request and return its response, skipping notifications and server requests."""
        self._next_id += 1
        self.send({"id": self._next_id, "method": method, "params": params})
        while True:
            message = self.read()
            if message.get("id") == self._next_id and "method" not in message:
                return message

    def initialize(self) -> dict[str, Any]:
        response = self.request(
            "initialize", {"processId": None, "rootUri": None, "capabilities": {}}
        )
        self.send({"method": "initialized", "params": {}})
        return response

    def close(self) -> int:
        self.request("shutdown", None)
        self.send({"method": "exit"})
        return self.proc.wait(timeout=10)
