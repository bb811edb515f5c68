"""Server-initiated work-done progress (`$/progress`) that the client can cancel."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from lsprotocol import types
from pygls.lsp.server import LanguageServer

logger = logging.getLogger(__name__)


class Progress:
    """`async with Progress(ls, title) as progress:` begin ... report ... end.

    A no-op for clients without `window.workDoneProgress`. `cancelled` turns true, and
    `on_cancel` callbacks run, when the client sends window/workDoneProgress/cancel.
    """

    def __init__(self, ls: LanguageServer, title: str, *, cancellable: bool = True) -> None:
        self.ls = ls
        self.title = title
        self.cancellable = cancellable
        self.token: str | None = None

    async def __aenter__(self) -> Progress:
        window = self.ls.client_capabilities.window
        if window and window.work_done_progress:
            token = f"qcn-{uuid.uuid4().hex}"
            try:
                # Shielded: a cancelled task awaiting this reply breaks pygls 2.1 (#621).
                await asyncio.shield(self.ls.work_done_progress.create_async(token))
            except Exception as exc:
                logger.warning("progress not available: %s", exc)
            else:
                self.token = token
                self.ls.work_done_progress.begin(
                    token,
                    types.WorkDoneProgressBegin(title=self.title, cancellable=self.cancellable),
                )
        return self

    def report(self, message: str, percentage: int) -> None:
        if self.token:
            self.ls.work_done_progress.report(
                self.token, types.WorkDoneProgressReport(message=message, percentage=percentage)
            )

    @property
    def cancelled(self) -> bool:
        future = self.ls.work_done_progress.tokens.get(self.token) if self.token else None
        return bool(future and future.cancelled())

    def on_cancel(self, callback: Callable[[], None]) -> None:
        future = self.ls.work_done_progress.tokens.get(self.token) if self.token else None
        if future is not None:
            future.add_done_callback(lambda f: callback() if f.cancelled() else None)

    async def __aexit__(self, *exc_info: object) -> None:
        if self.token:
            self.ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd())
            self.ls.work_done_progress.tokens.pop(self.token, None)
