"""The interface every text-generation backend offers to the language server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from engine.params import GenerationParams
from engine.report import RequestReport
from engine.segments import Prompt

Lane = Literal["interactive", "background"]


@dataclass(frozen=True)
class ModelInfo:
    arch: str
    layers: int
    hybrid: bool
    n_ctx_train: int
    n_ctx: int
    path: str
    recurrent: bool = False
    n_vocab: int = 0
    chat_template: str | None = None  # the GGUF's own Jinja chat template, if it has one
    server: str | None = None  # remote backends: what serves the model, as the probe found it


class Generation(Protocol):
    """Async iterator of text deltas. Iterating a cancelled generation raises
    asyncio.CancelledError; errors raised by the backend surface from iteration too."""

    def __aiter__(self) -> AsyncIterator[str]: ...

    async def __anext__(self) -> str: ...

    def cancel(self) -> None: ...

    @property
    def report(self) -> RequestReport | None: ...

    def prompt_progress(self) -> tuple[int, int] | None:
        """(prompt tokens ready, prompt tokens) once the backend is reading the prompt (tokens
        restored from a cache count as ready); None before that, or when it cannot tell."""
        ...

    async def text(self) -> str: ...


class Backend(Protocol):
    """What the language server needs from a model: `LocalEngine` (in-process) and
    `engine.remote.RemoteBackend` (an OpenAI-compatible server) both offer it."""

    async def start(self) -> None: ...

    def stream(
        self,
        prompt: Prompt,
        params: GenerationParams,
        *,
        key: str | None = None,
        lane: Lane = "interactive",
    ) -> Generation: ...

    def warm(self, prompt: Prompt, *, key: str | None = None) -> Generation:
        """Prefill `prompt` without generating, at the lowest priority: a later `stream` or
        `warm` preempts it between micro-batches, and what was prefilled stays live for the
        requests that share the prefix. The generation yields no text; its report (with
        `warmup` set) says what was done."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def info(self) -> ModelInfo: ...

    def stats(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...
