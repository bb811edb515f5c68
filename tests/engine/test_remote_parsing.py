"""How the remote backend reads what servers send, edge cases included: a scripted stand-in
on loopback plays back raw HTTP answers (broken and truncated event streams, tool-call
deltas, 429 / 503 with Retry-After, redirects, HTML). Real-server behaviour is tested in
test_remote_backend.py against llama_cpp.server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from engine.formats import chat_prompt, fim_prompt
from engine.params import GenerationParams
from engine.remote import RemoteBackend, RemoteConfig
from engine.remote.errors import (
    RemoteAuthError,
    RemoteError,
    RemoteHTTPError,
    RemoteProtocolError,
    RemoteStreamTruncated,
    RemoteTimeout,
)
from engine.remote.shaping import warm_boundary
from engine.toolcalls import parse_tool_calls

MODELS = {"object": "list", "data": [{"id": "m", "object": "model", "owned_by": "vllm"}]}
TOKENS = {"tokens": list(range(200)), "count": 200}


def json_response(body: Any, status: int = 200, headers: Sequence[str] = ()) -> bytes:
    payload = json.dumps(body).encode()
    head = [f"HTTP/1.1 {status} X", "Content-Type: application/json", *headers]
    head.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


def sse_response(events: Sequence[str], *, done: bool = True, close_early: bool = False) -> bytes:
    """An event stream with each `data:` line; chunked like a real server's."""
    lines = [f"data: {event}\n\n" for event in events] + (["data: [DONE]\n\n"] if done else [])
    body = b"".join(f"{len(x.encode()):x}\r\n{x}\r\n".encode() for x in lines)
    if not close_early:
        body += b"0\r\n\r\n"
    head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked"
    return (head + "\r\n\r\n").encode() + body


def chunk(text: str, finish: str | None = None) -> str:
    return json.dumps({"choices": [{"index": 0, "text": text, "finish_reason": finish}]})


@dataclass
class ScriptedServer:
    """Answers each request with the next scripted raw response (after the probe's two); a
    (response, seconds) entry sends the response, then holds the connection that long."""

    script: list[bytes | tuple[bytes, float]]
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    models: dict[str, Any] | bytes = field(default_factory=lambda: MODELS)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        length = next(
            (int(h.split(":")[1]) for h in lines if h.lower().startswith("content-length")), 0
        )
        body = await reader.readexactly(length) if length else b""
        method, path, _ = lines[0].split(" ")
        self.requests.append({"method": method, "path": path, "body": body, "at": time.time()})
        hold = 0.0
        if path.endswith("/models"):
            models = self.models
            writer.write(models if isinstance(models, bytes) else json_response(models))
        elif path.endswith("/tokenize"):
            writer.write(json_response(TOKENS))
        else:
            answer = self.script.pop(0)
            answer, hold = answer if isinstance(answer, tuple) else (answer, 0.0)
            writer.write(answer)
        await writer.drain()
        await asyncio.sleep(hold)
        writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedServer]:
    stand_in = ScriptedServer([])
    server = await asyncio.start_server(stand_in.handle, "127.0.0.1", 0)
    stand_in.port = server.sockets[0].getsockname()[1]
    yield stand_in
    server.close()


async def started(url: str, **options: Any) -> RemoteBackend:
    backend = RemoteBackend(RemoteConfig(url, "m", backoff_s=0.01, **options))
    await backend.start()
    return backend


def fim() -> Any:
    return fim_prompt("r", [], "a.py", "x = ", "\n")


async def test_text_deltas_and_the_usage_report(scripted: ScriptedServer) -> None:
    usage = json.dumps(
        {
            "choices": [{"index": 0, "text": "", "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 40, "completion_tokens": 2},
        }
    )
    scripted.script.append(sse_response([chunk("1"), chunk(" + 1"), usage]))
    backend = await started(scripted.url)
    generation = backend.stream(fim(), GenerationParams(max_tokens=4, stop=("<|file_sep|>",)))
    assert [d async for d in generation] == ["1", " + 1"]
    assert generation.report is not None
    assert (generation.report.prompt_tokens, generation.report.generated_tokens) == (40, 2)
    sent = json.loads(scripted.requests[-1]["body"])
    assert sent["prompt"] == fim().text and sent["stream"] is True
    assert sent["stop"] == ["<|file_sep|>"] and "message_delimiters" not in sent  # vLLM


async def test_stop_strings_are_applied_when_a_server_ignores_them(
    scripted: ScriptedServer,
) -> None:
    scripted.script.append(sse_response([chunk("a<|file"), chunk("_sep|>b")]))
    backend = await started(scripted.url)
    generation = backend.stream(fim(), GenerationParams(stop=("<|file_sep|>",)))
    assert await generation.text() == "a"


async def test_an_event_that_is_not_json_is_its_own_error(scripted: ScriptedServer) -> None:
    scripted.script.append(sse_response([chunk("a"), "{not json"]))
    backend = await started(scripted.url)
    with pytest.raises(RemoteProtocolError, match="not JSON"):
        await backend.stream(fim(), GenerationParams()).text()


async def test_a_stream_cut_before_done_is_truncated(scripted: ScriptedServer) -> None:
    scripted.script.append(sse_response([chunk("a")], done=False))
    backend = await started(scripted.url)
    with pytest.raises(RemoteStreamTruncated, match="ended before it was complete"):
        await backend.stream(fim(), GenerationParams()).text()


async def test_a_connection_dropped_mid_stream_is_a_disconnect(scripted: ScriptedServer) -> None:
    scripted.script.append(sse_response([chunk("a")], done=False, close_early=True))
    backend = await started(scripted.url)
    with pytest.raises(RemoteError, match="closed the connection mid-answer"):
        await backend.stream(fim(), GenerationParams()).text()


async def test_an_error_event_mid_stream(scripted: ScriptedServer) -> None:
    error = json.dumps({"error": {"message": "out of memory", "code": 500}})
    scripted.script.append(sse_response([chunk("a"), error]))
    backend = await started(scripted.url)
    with pytest.raises(RemoteHTTPError, match="out of memory"):
        await backend.stream(fim(), GenerationParams()).text()


async def test_a_server_silent_past_the_read_timeout_mid_answer(
    scripted: ScriptedServer,
) -> None:
    started_stream = sse_response([chunk("x")], done=False, close_early=True)
    scripted.script.append((started_stream, 3.0))
    backend = await started(scripted.url, read_timeout_s=0.3)
    with pytest.raises(RemoteTimeout, match="stopped sending mid-answer"):
        await backend.stream(fim(), GenerationParams()).text()


async def test_a_server_silent_before_answering(scripted: ScriptedServer) -> None:
    scripted.script.append((b"", 3.0))
    backend = await started(scripted.url, read_timeout_s=0.3)
    with pytest.raises(RemoteTimeout, match=r"sent nothing for 0.3 s.*backend.readTimeoutS"):
        await backend.stream(fim(), GenerationParams()).text()


async def test_a_forbidden_key_is_its_own_error(scripted: ScriptedServer) -> None:
    scripted.script.append(json_response({"error": {"message": "no access to m"}}, 403))
    backend = await started(scripted.url, api_key="sk-secret", api_key_env="QCN_TEST_KEY")
    with pytest.raises(RemoteAuthError, match=r"HTTP 403: no access to m.*\$QCN_TEST_KEY") as err:
        await backend.stream(fim(), GenerationParams()).text()
    assert "sk-secret" not in str(err.value)


async def test_a_base_url_without_the_api_path_is_a_wrong_url(scripted: ScriptedServer) -> None:
    scripted.models = json_response({"detail": "Not Found"}, 404)
    with pytest.raises(RemoteHTTPError, match=r"no OpenAI-compatible endpoint.*ends with /v1"):
        await started(scripted.url)


async def test_html_instead_of_an_api(scripted: ScriptedServer) -> None:
    page = b"<html>login</html>"
    scripted.script.append(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s"
        % (len(page), page)
    )
    backend = await started(scripted.url)
    with pytest.raises(RemoteProtocolError, match="neither an event stream nor JSON"):
        await backend.stream(fim(), GenerationParams()).text()


async def test_429_and_503_are_retried_honouring_retry_after(scripted: ScriptedServer) -> None:
    busy = json_response({"error": {"message": "busy"}}, 429, ["Retry-After: 1"])
    unavailable = json_response({"error": {"message": "loading"}}, 503)
    scripted.script += [busy, unavailable, sse_response([chunk("ok", "stop")])]
    backend = await started(scripted.url)
    assert await backend.stream(fim(), GenerationParams()).text() == "ok"
    attempts = [r["at"] for r in scripted.requests if r["path"].endswith("/completions")]
    assert len(attempts) == 3 and attempts[1] - attempts[0] >= 0.9  # Retry-After: 1
    assert backend.stats()["retries"] == 2


async def test_a_retry_after_beyond_the_limit_fails_at_once(scripted: ScriptedServer) -> None:
    scripted.script.append(json_response({"error": "slow down"}, 429, ["Retry-After: 120"]))
    backend = await started(scripted.url)
    with pytest.raises(RemoteHTTPError, match=r"busy .* try again in 120 s"):
        await backend.stream(fim(), GenerationParams()).text()


async def test_retries_are_bounded(scripted: ScriptedServer) -> None:
    scripted.script += [json_response({"error": "x"}, 503) for _ in range(3)]
    backend = await started(scripted.url, retries=2)
    with pytest.raises(RemoteHTTPError, match="HTTP 503"):
        await backend.stream(fim(), GenerationParams()).text()
    assert len([r for r in scripted.requests if r["path"].endswith("/completions")]) == 3


async def test_a_redirect_to_another_host_is_not_followed(scripted: ScriptedServer) -> None:
    elsewhere = ScriptedServer([sse_response([chunk("leak")])])
    other = await asyncio.start_server(elsewhere.handle, "127.0.0.1", 0)
    target = f"http://127.0.0.1:{other.sockets[0].getsockname()[1]}/v1/completions"
    scripted.script.append(json_response({}, 307, [f"Location: {target}"]))
    backend = await started(scripted.url)
    with pytest.raises(RemoteHTTPError, match="does not follow redirects"):
        await backend.stream(fim(), GenerationParams()).text()
    other.close()
    assert elsewhere.requests == []


async def test_server_parsed_tool_calls_come_back_as_the_models_xml(
    scripted: ScriptedServer,
) -> None:
    def delta(**fields: Any) -> str:
        return json.dumps({"choices": [{"index": 0, "delta": fields, "finish_reason": None}]})

    arguments = json.dumps({"path": "a.py", "old_text": "x = 1", "new_text": "x = 2\n"})
    pieces = [
        delta(role="assistant", content="Fixing."),
        delta(tool_calls=[{"index": 0, "id": "c1", "function": {"name": "edit_file"}}]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": arguments[:20]}}]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": arguments[20:]}}]),
        json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
    ]
    scripted.script.append(sse_response(pieces))
    backend = await started(scripted.url)
    tools = [{"type": "function", "function": {"name": "edit_file", "parameters": {}}}]
    conversation = chat_prompt([{"role": "user", "content": "fix"}], tools)
    text = await backend.stream(conversation, GenerationParams(), lane="background").text()
    assert text.startswith("Fixing.")
    (call,) = parse_tool_calls(text)
    assert call.name == "edit_file" and call.arguments == json.loads(arguments)
    sent = json.loads(scripted.requests[-1]["body"])
    assert scripted.requests[-1]["path"] == "/v1/chat/completions"
    assert sent["messages"] == [{"role": "user", "content": "fix"}] and sent["tools"] == tools


async def test_a_server_without_streaming_answers_once(scripted: ScriptedServer) -> None:
    whole = {"choices": [{"index": 0, "text": "all", "finish_reason": "stop"}]}
    scripted.script.append(json_response(whole))
    backend = await started(scripted.url)
    assert await backend.stream(fim(), GenerationParams()).text() == "all"


LLAMA_SERVER_MODELS = {
    "object": "list",
    "data": [
        {"id": "m", "object": "model", "owned_by": "llamacpp", "meta": {"n_ctx": 65536}},
    ],
}


def test_the_warm_boundary_is_the_start_of_the_cursors_line() -> None:
    prompt = fim_prompt("r", [("a.py", "A = 1\n")], "b.py", "x = 1\ny = 2\nz = ", "\nw\n")
    boundary = warm_boundary(prompt)
    assert prompt.text.startswith(boundary) and boundary.endswith("y = 2\n")
    assert (
        warm_boundary(fim_prompt("r", [], "b.py", "z = ", "")).endswith("<|fim_prefix|>") is False
    )


async def test_llama_server_requests_are_shaped_unless_off(scripted: ScriptedServer) -> None:
    scripted.models = LLAMA_SERVER_MODELS
    long_file = "def helper(x):\n    return x * 2\n" * 100
    prompt = fim_prompt("r", [("a.py", long_file)], "b.py", "x = 1\ny = ", "\n")
    done = sse_response([chunk("", "stop")])
    scripted.script += [done, done, done]
    shaped = await started(scripted.url)
    assert shaped.info().n_ctx == 65536
    await shaped.stream(prompt, GenerationParams(max_tokens=3)).text()
    warm, answer = (json.loads(r["body"]) for r in scripted.requests[-2:])
    assert warm["prompt"] == warm_boundary(prompt) and warm["max_tokens"] == 1
    assert answer["prompt"] == prompt.text
    for body in (warm, answer):
        assert body["timings_per_token"] is True and body["cache_prompt"] is True
        assert {"role": "user", "delimiter": "<|file_sep|>"} in body["message_delimiters"]
    plain = await started(scripted.url, shape_requests="off")
    await plain.stream(prompt, GenerationParams(max_tokens=3)).text()
    body = json.loads(scripted.requests[-1]["body"])
    assert "message_delimiters" not in body and body["timings_per_token"] is True
