"""What the user is told while completions wait on slow work, so that the first completion
after start is never silently empty.

Two kinds of slow work: the model still loading (its own `$/progress` comes from the
services), and a prompt that takes long to read; the first one after start reads the whole
repository context, which on a CPU can take minutes. While a completion's prompt has at least
`LONG_READ_TOKENS` tokens left to read, a `$/progress` "qcn-lsp: reading repository context"
reports "k/n tokens" (one progress across the runs that supersede each other meanwhile; a
keystroke's few new tokens get none). Each kind is also said once per server with
`window/showMessage`, the first time a completion has to wait on it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from lsprotocol import types

from qcn_lsp.progress import Progress

if TYPE_CHECKING:
    from engine.backend import Generation
    from qcn_lsp.server import QcnServer

logger = logging.getLogger(__name__)

READING_TITLE = "qcn-lsp: reading repository context"
# A prompt with this many tokens left to read gets a progress report (seconds of work for a
# large model on a CPU); every keystroke's few new tokens get none.
LONG_READ_TOKENS = 2048
POLL_S = 0.25


def reading_text(counts: tuple[int, int] | None) -> str:
    """What a prompt being read is at, for progress reports and error messages."""
    if counts is None:
        return "reading the prompt"
    ready, total = counts
    return f"reading the prompt: {ready}/{total} tokens"


class SlowStart:
    """One per server: the messages said so far and the prompt being read."""

    def __init__(self, server: QcnServer) -> None:
        self.server = server
        self._said: set[str] = set()
        self._reading: Generation | None = None
        self._reporter: asyncio.Task[None] | None = None

    def say_once(self, kind: str, message: str) -> None:
        """`window/showMessage` `message`, the first time only for this `kind`."""
        if kind in self._said:
            return
        self._said.add(kind)
        logger.info("%s", message)
        self.server.window_show_message(
            types.ShowMessageParams(type=types.MessageType.Info, message=message)
        )

    def reading(self, generation: Generation) -> None:
        """A completion's prompt is being read (until `read`)."""
        self._reading = generation
        if self._reporter is None or self._reporter.done():
            self._reporter = asyncio.get_running_loop().create_task(self._report())

    def read(self, generation: Generation) -> None:
        """`generation` wrote its first text, or ended."""
        if self._reading is generation:
            self._reading = None

    async def _report(self) -> None:
        # Until a long read is under way, or no prompt is being read any more.
        while not _long_read(self._reading):
            if self._reading is None:
                return
            await asyncio.sleep(POLL_S)
        async with Progress(self.server, READING_TITLE, cancellable=False) as progress:
            while (generation := self._reading) is not None:
                counts = generation.prompt_progress()
                if counts is not None:
                    ready, total = counts
                    progress.report(f"{ready}/{total} tokens", int(100 * ready / max(1, total)))
                await asyncio.sleep(POLL_S)


def _long_read(generation: Generation | None) -> bool:
    counts = generation.prompt_progress() if generation is not None else None
    return counts is not None and counts[1] - counts[0] >= LONG_READ_TOKENS
