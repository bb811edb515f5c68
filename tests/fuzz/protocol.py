"""A hypothesis-driven protocol fuzzer for a running `qcn-lsp` (the tiny test model loaded).

A hypothesis state machine plays a hostile client over stdio: invalid JSON, wrong, missing
and non-numeric Content-Length, huge headers, JSON-RPC batches, unknown methods, params of the
wrong type for known methods, negative and out-of-range positions, positions inside surrogate
pairs, non-file URIs, didChange for unopened documents and with stale versions, huge, binary,
NUL and lone-surrogate text, cancellation of unknown ids, unsolicited responses, requests
after `shutdown`, `exit` without `shutdown`, and the ordinary requests in between.

After each example (and at the end) the server must be alive unless the machine stopped it,
must have answered every request that reached it whole with exactly one result or JSON-RPC
error, must never have answered anything else, and a normal completion must still work.

    PYTHONPATH=. python -m tests.fuzz.protocol --messages 10000    # the full run, by hand

tests/fuzz/test_protocol_fuzz.py runs a few hundred messages in CI.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.lsp.helpers import server_env

T = TypeVar("T")
ANSWER_TIMEOUT_S = 120.0
STEPS_BEFORE_A_STOP = 20
REQUESTS = [
    "textDocument/inlineCompletion",
    "textDocument/completion",
    "textDocument/codeAction",
    "codeAction/resolve",
    "workspace/executeCommand",
    "textDocument/hover",
    "textDocument/definition",
    "initialize",
    "workspace/symbol",
]
NOTIFICATIONS = [
    "textDocument/didOpen",
    "textDocument/didChange",
    "textDocument/didClose",
    "textDocument/didSave",
    "workspace/didChangeConfiguration",
    "workspace/didChangeWatchedFiles",
    "workspace/didChangeWorkspaceFolders",
    "window/workDoneProgress/cancel",
    "$/cancelRequest",
    "$/setTrace",
    "initialized",
]
COMMANDS = ["qcn.status", "qcn.rewrite", "qcn.editFiles", "qcn.refactor", "qcn.nope", ""]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
# Text with what editors send and what they should not: astral characters (two UTF-16
# units), lone surrogates (valid JSON escapes), NUL and other controls, CR, form feeds.
awkward_text = st.text(
    alphabet=st.characters(codec=None, categories=None)
    | st.sampled_from(["😀", "\ud83d", "\ude00", "\x00", "\n", "\r", "\x0c", "\u2028", "é"]),
    max_size=200,
)
positions = st.fixed_dictionaries(
    {
        "line": st.integers(-3, 3) | st.integers(0, 40) | st.integers(10**6, 2**31),
        "character": st.integers(-3, 3) | st.integers(0, 120) | st.integers(10**6, 2**31),
    }
)
ranges = st.fixed_dictionaries({"start": positions, "end": positions})


@dataclass
class Tally:
    """What a run sent and got back, for the report."""

    messages: int = 0
    requests: int = 0
    answered: int = 0
    results: int = 0
    errors: collections.Counter[int] = field(default_factory=collections.Counter)
    servers: int = 0
    seconds: float = 0.0
    kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    unseen: list[str] = field(default_factory=list)  # kinds of rule that never ran

    def report(self) -> str:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(self.errors.items()))
        return (
            f"{self.messages} messages ({self.requests} requests) to {self.servers} server "
            f"processes in {self.seconds:.0f} s: {self.answered} answered ({self.results} "
            f"results; errors by code {codes})\n"
            + "\n".join(f"  {kind}: {n}" for kind, n in sorted(self.kinds.items()))
            + "".join(f"\n  {kind}: never ran" for kind in self.unseen)
        )


TALLY = Tally()
KINDS: list[str] = []  # the rules, by name


def counted(function: Callable[..., T]) -> Callable[..., T]:
    """A rule whose runs the tally counts: the report says how often each kind was sent."""
    KINDS.append(function.__name__)

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> T:
        TALLY.kinds[function.__name__] += 1
        return function(*args, **kwargs)

    return run


class ServerUnderTest:
    """The `qcn-lsp` process and a reader thread that collects what it writes."""

    def __init__(self, model: Path, workspace: Path, cache: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qcn_lsp", "--log-level", "ERROR"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=server_env(),
        )
        TALLY.servers += 1
        self.answers: dict[Any, list[dict[str, Any]]] = collections.defaultdict(list)
        self.arrived: queue.Queue[dict[str, Any]] = queue.Queue()
        self.pending: set[Any] = set()  # request ids sent whole and not answered yet
        self.sent_ids: set[Any] = set()
        self.unexpected: list[dict[str, Any]] = []
        self.next_id = 0
        self.shut_down = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        answer = self.call(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": workspace.as_uri(),
                "capabilities": {"general": {"positionEncodings": ["utf-16"]}},
                "initializationOptions": {
                    "model": {"path": str(model), "contextLength": 4096},
                    "completion": {"maxTokens": 4, "debounceMs": 0, "timeoutMs": 120_000},
                    "edits": {"maxTokens": 16, "maxToolRounds": 1},
                    "cache": {"dir": str(cache)},
                },
            },
        )
        assert "result" in answer, answer
        self.notify("initialized", {})

    # -- sending ------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()
        TALLY.messages += 1

    def frame(self, message: Any) -> None:
        body = json.dumps(message).encode()
        self.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def request(self, method: str, params: Any, *, omit_params: bool = False) -> Any:
        self.next_id += 1
        request_id: Any = self.next_id if self.next_id % 3 else f"s{self.next_id}"
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if not omit_params:
            message["params"] = params
        self.pending.add(request_id)
        self.sent_ids.add(request_id)
        TALLY.requests += 1
        self.frame(message)
        return request_id

    def notify(self, method: str, params: Any) -> None:
        self.frame({"jsonrpc": "2.0", "method": method, "params": params})

    def call(self, method: str, params: Any) -> dict[str, Any]:
        request_id = self.request(method, params)
        return self.wait_for(request_id)

    # -- receiving ----------------------------------------------------------------------------

    def _read(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        while True:
            length = None
            while True:
                line = stream.readline()
                if not line:
                    return
                if not line.strip():
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length is None:
                self.unexpected.append({"frame without Content-Length": True})
                continue
            message = json.loads(stream.read(length))
            self.arrived.put(message)

    def _take(self, message: dict[str, Any]) -> None:
        if "method" in message:
            if "id" in message:  # a server-to-client request: answer it as a plain client
                self.frame({"jsonrpc": "2.0", "id": message["id"], "result": None})
            return
        request_id = message.get("id")
        well_formed = message.get("jsonrpc") == "2.0" and (
            ("result" in message) != ("error" in message)
        )
        if "error" in message:
            TALLY.errors[message["error"].get("code")] += 1
        if request_id is None:
            # Only a message that could not be read at all gets an answer without an id.
            if not ("error" in message and message["error"].get("code") in (-32700, -32600)):
                self.unexpected.append(message)
            return
        if request_id not in self.sent_ids or not well_formed or self.answers[request_id]:
            self.unexpected.append(message)
        self.answers[request_id].append(message)
        self.pending.discard(request_id)
        TALLY.answered += 1
        TALLY.results += "result" in message

    def drain(self) -> None:
        while True:
            try:
                self._take(self.arrived.get_nowait())
            except queue.Empty:
                return

    def wait_for(self, request_id: Any, timeout: float = ANSWER_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not self.answers.get(request_id):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.proc.poll() is not None and self.arrived.empty()):
                raise AssertionError(f"request {request_id} never answered")
            try:
                self._take(self.arrived.get(timeout=min(remaining, 0.5)))
            except queue.Empty:
                continue
        return self.answers[request_id][0]

    def settle(self) -> None:
        """Every request answered, nothing else answered."""
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while self.pending and time.monotonic() < deadline:
            try:
                self._take(self.arrived.get(timeout=0.5))
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
        self.drain()
        assert not self.pending, f"unanswered requests: {sorted(map(str, self.pending))[:20]}"
        assert not self.unexpected, f"unexpected answers: {self.unexpected[:5]}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            if not self.shut_down:
                self.call("shutdown", None)
            self.notify("exit", None)
            self.proc.wait(timeout=60)


@dataclass
class Run:
    model: Path
    workspace: Path
    cache: Path
    server: ServerUnderTest | None = None

    def current(self) -> ServerUnderTest:
        if self.server is None or self.server.proc.poll() is not None:
            self.server = ServerUnderTest(self.model, self.workspace, self.cache)
        return self.server


RUN: Run | None = None


def normal_completion_works(server: ServerUnderTest, workspace: Path) -> None:
    path = workspace / "sound.py"
    text = "def area(radius):\n    return 3.14 * radius * radius\n\n\nvalue = "
    path.write_text(text)
    server.notify(
        "textDocument/didOpen",
        {
            "textDocument": {
                "uri": path.as_uri(),
                "languageId": "python",
                "version": 1,
                "text": text,
            }
        },
    )
    # A loaded machine (and 5 MB documents before) can make the first load take a while.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = server.call("workspace/executeCommand", {"command": "qcn.status"})["result"]
        if state["engine"]["state"] == "ready":
            break
        time.sleep(0.05)
    answer = server.call(
        "textDocument/inlineCompletion",
        {
            "textDocument": {"uri": path.as_uri()},
            "position": {"line": 4, "character": 8},
            "context": {"triggerKind": 1},
        },
    )
    assert "result" in answer and isinstance(answer["result"]["items"], list), answer


class ProtocolFuzz(RuleBasedStateMachine):
    documents = Bundle("documents")

    def __init__(self) -> None:
        super().__init__()
        assert RUN is not None
        self.run = RUN
        self.server = RUN.current()
        self.versions: dict[str, int] = {}
        self.steps = 0
        self.stopped = False

    @invariant()
    def count_steps(self) -> None:
        self.steps += 1

    def may_stop(self) -> bool:
        """Stopping the server ends what an example can find in it: late and once."""
        return self.steps >= STEPS_BEFORE_A_STOP and not self.stopped

    # -- documents ----------------------------------------------------------------------------

    @initialize(target=documents)
    def open_a_file(self) -> str:
        return self._open(self.run.workspace / "fuzz.py", "def f(x):\n    return x\n\ny = ")

    def _open(self, path: Path | str, text: str, version: int = 1) -> str:
        uri = path.as_uri() if isinstance(path, Path) else path
        self.versions[uri] = version
        self.server.notify(
            "textDocument/didOpen",
            {
                "textDocument": {
                    "uri": uri,
                    "languageId": "python",
                    "version": version,
                    "text": text,
                }
            },
        )
        return uri

    @rule(
        target=documents,
        name=st.sampled_from(["a.py", "b.ts", "c.rs", "sub/d.go", "e.txt", ".env", "💡.py"]),
        text=awkward_text,
        scheme=st.sampled_from(["file", "file", "file", "untitled", "git", "https", "%%"]),
    )
    @counted
    def open_document(self, name: str, text: str, scheme: str) -> str:
        path = self.run.workspace / name
        if scheme == "file":
            return self._open(path, text)
        return self._open(f"{scheme}:{path}", text)

    @rule(size=st.sampled_from([1 << 20, 5 << 20]), fill=st.sampled_from(["x = 1\n", "\x00", "😀"]))
    @counted
    def open_a_huge_document(self, size: int, fill: str) -> None:
        uri = self._open(self.run.workspace / "huge.py", fill * (size // len(fill.encode())))
        self.server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})

    @rule(
        uri=documents,
        version=st.sampled_from(["next", "same", "stale", "negative", "huge"]),
        edit_range=ranges | st.none(),
        text=awkward_text,
    )
    @counted
    def change_document(self, uri: str, version: str, edit_range: Any, text: str) -> None:
        current = self.versions.get(uri, 0)
        number = {
            "next": current + 1,
            "same": current,
            "stale": current - 1,
            "negative": -5,
            "huge": 2**31 - 1,
        }[version]
        self.versions[uri] = max(current, number)
        change: dict[str, Any] = {"text": text}
        if edit_range is not None:
            change["range"] = edit_range
        self.server.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": number}, "contentChanges": [change]},
        )

    @rule(name=st.text(max_size=8), edit_range=ranges, text=awkward_text)
    @counted
    def change_an_unopened_document(self, name: str, edit_range: Any, text: str) -> None:
        self.server.notify(
            "textDocument/didChange",
            {
                "textDocument": {
                    "uri": (self.run.workspace / f"never{name}.py").as_uri(),
                    "version": 3,
                },
                "contentChanges": [{"range": edit_range, "text": text}],
            },
        )

    @rule(
        inside=st.sampled_from([(0, 2), (0, 5), (1, 1), (2, 7)]),
        request=st.sampled_from(["inlineCompletion", "completion", "codeAction", "didChange"]),
    )
    @counted
    def position_inside_a_surrogate_pair(self, inside: tuple[int, int], request: str) -> None:
        """UTF-16 offsets that split an astral character in two (line, character)."""
        uri = self._open(self.run.workspace / "astral.py", "a😀b😀\n💡\nname = '😀'\n")
        at = {"line": inside[0], "character": inside[1]}
        document = {"uri": uri}
        if request == "didChange":
            self.versions[uri] += 1
            self.server.notify(
                "textDocument/didChange",
                {
                    "textDocument": {**document, "version": self.versions[uri]},
                    "contentChanges": [{"range": {"start": at, "end": at}, "text": "x"}],
                },
            )
        elif request == "codeAction":
            self.server.request(
                "textDocument/codeAction",
                {
                    "textDocument": document,
                    "range": {"start": at, "end": {"line": inside[0] + 1, "character": 1}},
                    "context": {"diagnostics": []},
                },
            )
        else:
            self.server.request(
                f"textDocument/{request}",
                {"textDocument": document, "position": at, "context": {"triggerKind": 1}},
            )

    @rule(uri=documents, save=st.booleans())
    @counted
    def save_or_close(self, uri: str, save: bool) -> None:
        method = "textDocument/didSave" if save else "textDocument/didClose"
        self.server.notify(method, {"textDocument": {"uri": uri}})

    # -- requests -----------------------------------------------------------------------------

    @rule(
        uri=documents
        | st.sampled_from(["file:///nowhere.py", "untitled:1", "", "file://host/x.py"]),
        position=positions,
        inline=st.booleans(),
        trigger=st.sampled_from([1, 2, 0, 99]),
    )
    @counted
    def complete(self, uri: str, position: Any, inline: bool, trigger: int) -> None:
        if inline:
            context = {"triggerKind": trigger}
            self.server.request(
                "textDocument/inlineCompletion",
                {"textDocument": {"uri": uri}, "position": position, "context": context},
            )
        else:
            self.server.request(
                "textDocument/completion",
                {
                    "textDocument": {"uri": uri},
                    "position": position,
                    "context": {"triggerKind": trigger},
                },
            )

    @rule(uri=documents, selection=ranges, resolve=st.booleans(), data=json_values)
    @counted
    def code_action(self, uri: str, selection: Any, resolve: bool, data: Any) -> None:
        params = {
            "textDocument": {"uri": uri},
            "range": selection,
            "context": {"diagnostics": [{"range": selection, "message": "fuzzed"}]},
        }
        self.server.request("textDocument/codeAction", params)
        if resolve:
            self.server.request("codeAction/resolve", {"title": "fuzzed", "data": data})

    @rule(command=st.sampled_from(COMMANDS), arguments=json_values)
    @counted
    def execute_command(self, command: str, arguments: Any) -> None:
        if command in ("qcn.rewrite", "qcn.editFiles", "qcn.refactor") and isinstance(
            arguments, dict
        ):
            arguments = {**arguments, "instruction": "fuzz"}
        self.server.request(
            "workspace/executeCommand", {"command": command, "arguments": arguments}
        )

    @rule(
        method=st.sampled_from(REQUESTS) | st.text(max_size=20),
        params=json_values,
        omit=st.booleans(),
    )
    @counted
    def request_with_any_params(self, method: str, params: Any, omit: bool) -> None:
        self.server.request(method, params, omit_params=omit)

    @rule(method=st.sampled_from(NOTIFICATIONS) | st.text(max_size=20), params=json_values)
    @counted
    def notification_with_any_params(self, method: str, params: Any) -> None:
        if method in ("exit", "shutdown"):
            method = "$/" + method
        self.server.notify(method, params)

    @rule(
        request_id=st.integers(-5, 10**6) | st.text(max_size=6) | st.none() | st.just("in flight")
    )
    @counted
    def cancel(self, request_id: Any) -> None:
        if request_id == "in flight":
            request_id = self.server.next_id
        self.server.notify("$/cancelRequest", {"id": request_id})

    @rule(request_id=st.integers(-5, 10**6) | st.text(max_size=6), result=json_values)
    @counted
    def unsolicited_response(self, request_id: Any, result: Any) -> None:
        self.server.frame({"jsonrpc": "2.0", "id": request_id, "result": result})

    @rule(value=json_values, version=st.sampled_from(["2.0", "1.0", None, 2]))
    @counted
    def wrong_envelope(self, value: Any, version: Any) -> None:
        """A JSON-RPC batch, or a message with a wrong or missing `jsonrpc` member."""
        if version == "2.0":
            self.server.frame([{"jsonrpc": "2.0", "method": "x/notification"}, value])
            return
        self.server.next_id += 1
        request_id = f"v{self.server.next_id}"
        message: dict[str, Any] = {"id": request_id, "method": "workspace/executeCommand"}
        message["params"] = {"command": "qcn.status"}
        if version is not None:
            message["jsonrpc"] = version
        self.server.pending.add(request_id)
        self.server.sent_ids.add(request_id)
        TALLY.requests += 1
        self.server.frame(message)

    @rule(nested=st.sampled_from(["shutdown", "initialize", "textDocument/hover"]))
    @counted
    def message_inside_params(self, nested: str) -> None:
        """Params that look like a message themselves must not be taken for one."""
        self.server.request(
            "workspace/executeCommand",
            {
                "command": "qcn.status",
                "arguments": [{"jsonrpc": "2.0", "id": 424242, "method": nested}],
            },
        )

    # -- framing ------------------------------------------------------------------------------

    @rule(body=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
    @counted
    def invalid_json(self, body: bytes) -> None:
        self.server.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    @rule(
        kind=st.sampled_from(
            ["short", "long", "missing", "not a number", "negative", "huge header"]
        ),
        body=st.just(b'{"jsonrpc": "2.0", "id": "lost", "method": "qcn/lost"}'),
    )
    @counted
    def bad_framing(self, kind: str, body: bytes) -> None:
        """A frame whose header lies. Whatever it swallows is then resynchronised: what is
        lost is only the frame itself."""
        if kind == "short":
            data = b"Content-Length: %d\r\n\r\n" % (len(body) - 7) + body + b"\r\n\r\n"
        elif kind == "long":
            data = b"Content-Length: %d\r\n\r\n" % (len(body) + 40) + body + b"x" * 40
        elif kind == "missing":
            data = b"Content-Type: application/json\r\n\r\n" + body + b"\r\n\r\n"
        elif kind == "not a number":
            data = b"Content-Length: twelve\r\n\r\n" + body + b"\r\n\r\n"
        elif kind == "negative":
            data = b"Content-Length: -5\r\n\r\n" + body + b"\r\n\r\n"
        else:
            data = b"X-Padding: " + b"a" * (1 << 20) + b"\r\n" + b"Content-Length: 2\r\n\r\n{}"
        self.server.write(data)

    # -- life cycle ---------------------------------------------------------------------------

    @precondition(may_stop)
    @rule(after=st.lists(st.sampled_from(REQUESTS), min_size=1, max_size=3), exit_code=st.just(0))
    @counted
    def shutdown_then_more(self, after: list[str], exit_code: int) -> None:
        self.stopped = True
        server = self.server
        server.call("shutdown", None)
        server.shut_down = True
        for method in after:
            request_id = server.request(method, {})
            assert server.wait_for(request_id)["error"]["code"] == -32600
        server.notify("exit", None)
        assert server.proc.wait(timeout=60) == exit_code
        server.settle()
        self.server = self.run.current()
        self.versions.clear()
        self.open_a_file()

    @precondition(may_stop)
    @rule()
    @counted
    def exit_without_shutdown(self) -> None:
        self.stopped = True
        server = self.server
        server.settle()
        server.notify("exit", None)
        assert server.proc.wait(timeout=60) == 1
        self.server = self.run.current()
        self.versions.clear()
        self.open_a_file()

    def teardown(self) -> None:
        server = self.server
        assert server.proc.poll() is None, f"the server died: exit code {server.proc.returncode}"
        ping = server.request("workspace/executeCommand", {"command": "qcn.status"})
        server.wait_for(ping)
        server.settle()
        normal_completion_works(server, self.run.workspace)


def fuzz(model: Path, root: Path, *, messages: int, steps: int, rounds: int = 100) -> Tally:
    """Run the machine, `steps` rules an example, against one server (a new one after each
    deliberate stop) until at least `messages` were sent and every kind of rule ran, or
    `rounds` rounds of examples are done."""
    global RUN
    workspace = root / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    RUN = Run(model, workspace, root / "cache")
    kinds = set(KINDS)
    started = time.perf_counter()
    try:
        for _ in range(rounds):
            missing = messages - TALLY.messages
            if missing <= 0 and kinds <= set(TALLY.kinds):
                break
            # Many examples a round: each round's first example is hypothesis' simplest
            # (the same few rules), and each example enables only some rules (swarm testing).
            run_state_machine_as_test(
                ProtocolFuzz,
                settings=settings(
                    max_examples=max(10, missing // steps),
                    stateful_step_count=steps,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                    database=None,
                ),
            )
    finally:
        if RUN.server is not None:
            RUN.server.stop()
        TALLY.seconds += time.perf_counter() - started
    TALLY.unseen = sorted(kinds - set(TALLY.kinds))
    return TALLY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10000, help="at least this many")
    parser.add_argument("--steps", type=int, default=100, help="rules an example, at most")
    parser.add_argument("--model", type=Path, help="GGUF (default: a fresh tiny test model)")
    args = parser.parse_args()
    print(f"load average at the start: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from engine.testing import write_test_model

            model = write_test_model(Path(tmp) / "tiny.gguf", preset="tiny", seed=0)
        tally = fuzz(model, Path(tmp), messages=args.messages, steps=args.steps)
    print(tally.report())
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
