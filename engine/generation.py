"""The asyncio side of one local request: the lane's worker thread feeds it text deltas."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from engine.backend import Lane
from engine.report import RequestReport


class LocalGeneration:
    """A `Generation` whose producer is a worker thread (via call_soon_threadsafe)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, lane: Lane) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._cancelled = threading.Event()
        self._finished = threading.Event()
        self._final: BaseException | None = None
        self._done = False
        self._report: RequestReport | None = None
        self.lane = lane
        self.token_ids: list[int] = []  # generated token ids, EOG excluded (tests, logs)
        self._prompt_progress: tuple[int, int] | None = None
        self.submitted_at = time.perf_counter()

    # -- consumer side (event loop) --
    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        if self._done:
            raise self._final or StopAsyncIteration()
        kind, payload = await self._queue.get()
        if kind == "delta":
            return str(payload)
        self._done = True
        if kind == "error":
            self._final = payload
        elif self._report is not None and self._report.cancelled:
            self._final = asyncio.CancelledError("generation cancelled")
        raise self._final or StopAsyncIteration()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def report(self) -> RequestReport | None:
        return self._report

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def prompt_progress(self) -> tuple[int, int] | None:
        return self._prompt_progress

    async def text(self) -> str:
        return "".join([delta async for delta in self])

    # -- producer side (worker thread) --
    def prompt_read(self, ready: int, total: int) -> None:
        """Prompt tokens in the state so far, of `total` (one tuple: read whole by the loop)."""
        self._prompt_progress = (ready, total)

    def post(self, text: str) -> None:
        """Hand one text delta to the consumer."""
        self._post("delta", text)

    def finish(self, report: RequestReport | None, error: BaseException | None) -> None:
        """End the stream: with `error` raised from iteration, or cleanly."""
        self._report = report
        self._finished.set()
        if error is not None:
            self._post("error", error)
        else:
            self._post("end", None)

    def _post(self, kind: str, payload: Any) -> None:
        # RuntimeError: the loop is closed, nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, payload))
