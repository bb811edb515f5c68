"""RemoteBackend: the `Backend` protocol over an OpenAI-compatible HTTP server.

FIM prompts go to `/v1/completions` as raw text (`prompt.text`: the same layout the local
engine reads, special tokens and all), streamed; chat prompts (edits, refactors) go to
`/v1/chat/completions` with the conversation they were rendered from, streamed, and tool calls
the server parsed come back as the model's own XML (`engine.remote.answers`). Each request is
one asyncio task; cancelling its generation cancels the task, which closes the connection, and
that is what makes the server stop generating. `stream(..., key=k)` cancels the previous
stream of `k`; a `warm` is preempted by any later stream or warm.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

import httpx

from engine.backend import Lane, ModelInfo
from engine.errors import EngineError
from engine.generation import LocalGeneration
from engine.params import GenerationParams
from engine.remote.answers import AnswerReader
from engine.remote.config import RemoteConfig
from engine.remote.errors import RemoteError, redact
from engine.remote.probe import ESTIMATE_MARGIN, ServerProbe, probe_server
from engine.remote.shaping import WarmPlanner, server_extras, shaping_enabled, warm_boundary
from engine.remote.sse import EventStream
from engine.remote.transport import RemoteTransport
from engine.segments import Conversation, Prompt
from engine.stop_filter import StopFilter

logger = logging.getLogger(__name__)

NOT_STARTED = "the remote backend is not started: call `await backend.start()` first"
# Servers that take llama.cpp's sampling fields and any number of stop strings; others get
# OpenAI's subset (at most four stop strings; the rest are applied here).
LLAMA_STYLE_SERVERS = ("llama-server", "llama-cpp-python", "vllm", "sglang", "ollama")
OPENAI_MAX_STOPS = 4


class RemoteGeneration(LocalGeneration):
    """A `Generation` fed by an asyncio task of this loop; `cancel()` also cancels the task."""

    def __init__(self, loop: asyncio.AbstractEventLoop, lane: Lane) -> None:
        super().__init__(loop, lane)
        self.task: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        super().cancel()
        if self.task is not None and not self.task.done():
            self._loop.call_soon_threadsafe(self.task.cancel)


class RemoteBackend:
    """Backend served by an OpenAI-compatible server (llama-server, vLLM, SGLang, Ollama,
    DashScope): probed at start, then one HTTP request per generation."""

    def __init__(self, config: RemoteConfig) -> None:
        self.config = config
        self._transport: RemoteTransport | None = None
        self._probe: ServerProbe | None = None
        self._by_key: dict[str, RemoteGeneration] = {}
        self._warming: RemoteGeneration | None = None
        self._planner = WarmPlanner()
        self._counts: dict[str, float] = {
            "requests": 0,
            "failed": 0,
            "cancelled": 0,
            "warm_requests": 0,
            "warm_prefilled_tokens": 0,
            "warm_ms": 0.0,
        }

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._transport is not None:
            return
        transport = RemoteTransport(self.config)
        try:
            self._probe = await probe_server(transport, self.config.model)
        except BaseException:
            await transport.close()
            raise
        self._transport = transport
        logger.info(
            "remote model %r at %s: %s",
            self.config.model,
            transport.where,
            self._probe.describe(),
        )

    async def close(self) -> None:
        generations = [*self._by_key.values(), *([self._warming] if self._warming else [])]
        for gen in generations:
            gen.cancel()
        tasks = [gen.task for gen in generations if gen.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._by_key.clear()
        self._warming = None
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.close()

    def _started(self) -> tuple[RemoteTransport, ServerProbe]:
        if self._transport is None or self._probe is None:
            raise EngineError(NOT_STARTED)
        return self._transport, self._probe

    # -- requests -----------------------------------------------------------------------------

    def stream(
        self,
        prompt: Prompt,
        params: GenerationParams,
        *,
        key: str | None = None,
        lane: Lane = "interactive",
    ) -> RemoteGeneration:
        if lane not in ("interactive", "background"):
            raise ValueError(f"unknown lane {lane!r}")
        transport, probe = self._started()
        self._preempt_warm()
        gen = RemoteGeneration(asyncio.get_running_loop(), lane)
        if key is not None:
            previous = self._by_key.get(key)
            self._by_key[key] = gen
            if previous is not None:
                previous.cancel()
        if prompt.conversation is not None:
            path, body = "chat/completions", self._chat_body(prompt.conversation, params, probe)
            warm_first = None
        else:
            path, body = "completions", self._completion_body(prompt.text, params, probe)
            warm_first = self._warm_prefix(prompt, lane, probe)
        stops = StopFilter(params.stop)
        self._start(gen, key, lambda: self._answer(transport, gen, path, body, stops, warm_first))
        return gen

    def warm(self, prompt: Prompt, *, key: str | None = None) -> RemoteGeneration:
        transport, _ = self._started()
        self._preempt_warm()
        gen = RemoteGeneration(asyncio.get_running_loop(), "interactive")
        self._warming = gen
        self._start(gen, None, lambda: self._warm(transport, gen, prompt.text))
        return gen

    def _start(
        self,
        gen: RemoteGeneration,
        key: str | None,
        work: Callable[[], Coroutine[Any, Any, None]],
    ) -> None:
        def done(_task: asyncio.Task[None]) -> None:
            if key is not None and self._by_key.get(key) is gen:
                del self._by_key[key]
            if self._warming is gen:
                self._warming = None

        self._counts["requests"] += 1
        gen.task = asyncio.get_running_loop().create_task(work())
        gen.task.add_done_callback(done)

    def _preempt_warm(self) -> None:
        if self._warming is not None:
            self._warming.cancel()
            self._warming = None

    def _shaping(self, probe: ServerProbe) -> bool:
        return shaping_enabled(self.config.shape_requests, probe.server)

    def _warm_prefix(self, prompt: Prompt, lane: Lane, probe: ServerProbe) -> str | None:
        """The prefix to warm before this completion, if shaping calls for one."""
        if lane != "interactive" or not self._shaping(probe):
            return None
        prefix = warm_boundary(prompt)
        return prefix if self._planner.needs_warm(prefix) else None

    # -- request bodies -----------------------------------------------------------------------

    def _sampling(self, params: GenerationParams, probe: ServerProbe) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            # llama-cpp-python reads 0 as "until the context is full".
            "max_tokens": max(1, params.max_tokens),
            "temperature": params.temperature,
            "stream": True,
        }
        if params.temperature > 0:
            body["top_p"] = params.top_p
            if probe.server in LLAMA_STYLE_SERVERS:
                body.update(top_k=params.top_k, min_p=params.min_p)
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            stops = list(params.stop)
            body["stop"] = (
                stops if probe.server in LLAMA_STYLE_SERVERS else stops[:OPENAI_MAX_STOPS]
            )
        return body

    def _completion_body(
        self, text: str, params: GenerationParams, probe: ServerProbe
    ) -> dict[str, Any]:
        extras = server_extras(probe.server, self._shaping(probe))
        return {**self._sampling(params, probe), "prompt": text, **extras}

    def _chat_body(
        self, conversation: Conversation, params: GenerationParams, probe: ServerProbe
    ) -> dict[str, Any]:
        body = self._sampling(params, probe)
        body["messages"] = [_chat_message(m) for m in conversation.messages]
        if conversation.tools:
            body["tools"] = [dict(t) for t in conversation.tools]
        return body

    # -- the exchanges ------------------------------------------------------------------------

    async def _answer(
        self,
        transport: RemoteTransport,
        gen: RemoteGeneration,
        path: str,
        body: dict[str, Any],
        stops: StopFilter,
        warm_first: str | None,
    ) -> None:
        reader = AnswerReader(transport.url(path))
        started, first = time.perf_counter(), None
        error: BaseException | None = None
        cancelled = False
        try:
            if warm_first is not None:
                await self._prefill(transport, warm_first)
            async with transport.stream(path, body) as response:
                async for event in EventStream(response, transport.url(path)).events():
                    text, stopped = stops.push(reader.read(event))
                    if text:
                        first = first or time.perf_counter()
                        gen.post(text)
                    if stopped:
                        break  # leaving the block closes the stream: the server stops
                else:
                    tail = stops.flush() + reader.tool_call_text()
                    if tail:
                        first = first or time.perf_counter()
                        gen.post(tail)
        except asyncio.CancelledError:
            cancelled = True
            self._counts["cancelled"] += 1
            logger.debug("request to %s cancelled: its stream is closed", path)
        except Exception as exc:
            error = self._failure(exc)
        report = reader.report(gen.lane, started, first, time.perf_counter())
        report.cancelled = cancelled
        gen.finish(report, error)

    async def _warm(self, transport: RemoteTransport, gen: RemoteGeneration, text: str) -> None:
        error: BaseException | None = None
        try:
            await self._prefill(transport, text)
        except asyncio.CancelledError:
            pass  # preempted: what the server prefilled so far stays in its cache
        except Exception as exc:
            error = self._failure(exc)
        gen.finish(None, error)

    async def _prefill(self, transport: RemoteTransport, text: str) -> None:
        """One max_tokens = 1 completion of `text`: the server prefills it and keeps what its
        cache keeps at a prompt's end."""
        _, probe = self._started()
        body = self._completion_body(text, GenerationParams(max_tokens=1), probe)
        reader = AnswerReader(transport.url("completions"))
        started = time.perf_counter()
        async with transport.stream("completions", body) as response:
            async for event in EventStream(response, transport.url("completions")).events():
                reader.read(event)
        report = reader.report("interactive", started, None, time.perf_counter())
        # Only a prefill that ran to its end left the server's checkpoints at the boundary.
        self._planner.seen(text)
        self._counts["warm_requests"] += 1
        self._counts["warm_prefilled_tokens"] += report.prefilled_tokens
        self._counts["warm_ms"] += report.ms["total"]
        logger.debug("warm request: %s", report.summary())

    def _failure(self, exc: Exception) -> BaseException:
        """Count a failed request and make sure its error says what happened, key-free."""
        self._counts["failed"] += 1
        self._planner.forget()
        if isinstance(exc, EngineError):
            return exc
        transport, _ = self._started()
        kind = "HTTP error" if isinstance(exc, httpx.HTTPError) else "unexpected error"
        message = redact(f"{kind} talking to {transport.where}: {exc}", self.config.api_key)
        logger.warning("%s", message, exc_info=not isinstance(exc, httpx.HTTPError))
        return RemoteError(message)

    # -- the rest of the protocol ---------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """A local estimate, never a network call (see engine.remote.probe)."""
        _, probe = self._started()
        return math.ceil(len(text) / (probe.chars_per_token * (1 - ESTIMATE_MARGIN)))

    def info(self) -> ModelInfo:
        transport, probe = self._started()
        n_ctx = probe.n_ctx or self.config.n_ctx
        return ModelInfo(
            arch="unknown (remote)",
            layers=0,
            hybrid=False,
            n_ctx_train=probe.n_ctx_train or n_ctx,
            n_ctx=n_ctx,
            path=self.config.model,
            n_vocab=probe.n_vocab or 0,
            server=f"{probe.server} at {transport.where}",
        )

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self._counts)
        if self._transport is not None:
            out["retries"] = self._transport.retried
        if self._probe is not None:
            probe = self._probe
            out["server"] = {
                "kind": probe.server,
                "models": list(probe.models),
                "nCtx": probe.n_ctx,
                "charsPerToken": round(probe.chars_per_token, 3),
                "tokenizer": probe.tokenizer,
                "shaping": self._shaping(probe),
            }
        return out


def _chat_message(message: Any) -> dict[str, str]:
    """An OpenAI chat message; a `tool` result goes as the user turn the model was trained to
    read (as engine.formats renders it), since no tool_call_id ties it to a call."""
    role = str(message.get("role", "user"))
    content = str(message.get("content", ""))
    if role == "tool":
        return {"role": "user", "content": f"<tool_response>\n{content}\n</tool_response>"}
    return {"role": role, "content": content}
