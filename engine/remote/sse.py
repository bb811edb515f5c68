"""Server-sent events of an OpenAI-compatible stream, as decoded JSON objects.

`data: {...}` lines (several `data:` lines of one event are joined with newlines), `:` comment
lines (keep-alive pings) ignored, `data: [DONE]` ends the stream. An event that is not JSON, an
`{"error": ...}` event, or a stream that ends before `[DONE]` and before any choice said
`finish_reason` each raise their own error.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from engine.remote.errors import (
    RemoteDisconnected,
    RemoteHTTPError,
    RemoteProtocolError,
    RemoteStreamTruncated,
    RemoteTimeout,
)

DONE = "[DONE]"


class EventStream:
    """Iterate `events()`; afterwards `finished` says whether the answer was complete."""

    def __init__(self, response: httpx.Response, where: str) -> None:
        self._response = response
        self._where = where
        self.finished = False  # [DONE] seen, or a choice with a finish_reason

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        content_type = self._response.headers.get("content-type", "")
        if "text/event-stream" not in content_type:
            # A server that ignores `stream: true` answers with one JSON body.
            yield await self._whole_body(content_type)
            self.finished = True
            return
        data: list[str] = []
        async for line in self._lines():
            if line.startswith(":"):
                continue
            if line == "":
                if data:
                    event = self._decode("\n".join(data))
                    data = []
                    if event is None:
                        self.finished = True
                        return
                    yield event
                continue
            field, _, value = line.partition(":")
            if field == "data":
                data.append(value[1:] if value.startswith(" ") else value)
        if data:  # the last event lacked its blank line
            event = self._decode("\n".join(data))
            if event is None:
                self.finished = True
                return
            yield event
        if not self.finished:
            raise RemoteStreamTruncated(
                f"the answer from {self._where} ended before it was complete (no [DONE]); "
                "the server may have stopped or a proxy cut the stream"
            )

    def _decode(self, text: str) -> dict[str, Any] | None:
        """One event's JSON, or None for [DONE]."""
        if text.strip() == DONE:
            return None
        try:
            event = json.loads(text)
        except ValueError:
            raise RemoteProtocolError(
                f"{self._where} sent an event that is not JSON: {text[:80]!r}"
            ) from None
        if not isinstance(event, dict):
            raise RemoteProtocolError(f"{self._where} sent an event that is not an object")
        if "error" in event and "choices" not in event:
            error = event["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            code = error.get("code") if isinstance(error, dict) else None
            raise RemoteHTTPError(
                f"{self._where} reported an error mid-answer: {message}",
                code if isinstance(code, int) else 500,
            )
        if any(c.get("finish_reason") for c in event.get("choices") or () if isinstance(c, dict)):
            self.finished = True
        return event

    async def _lines(self) -> AsyncIterator[str]:
        try:
            async for line in self._response.aiter_lines():
                yield line.rstrip("\r")
        except httpx.TimeoutException:
            raise RemoteTimeout(
                f"{self._where} stopped sending mid-answer (read timeout); it may be overloaded"
            ) from None
        except httpx.HTTPError as exc:
            raise RemoteDisconnected(
                f"the server at {self._where} closed the connection mid-answer "
                f"({type(exc).__name__}); did it stop or crash?"
            ) from None

    async def _whole_body(self, content_type: str) -> dict[str, Any]:
        body = "".join([line async for line in self._lines()])
        try:
            event = json.loads(body)
        except ValueError:
            raise RemoteProtocolError(
                f"{self._where} answered with {content_type or 'an unknown type'}, neither an "
                f"event stream nor JSON ({body[:80]!r}); is backend.baseUrl an "
                "OpenAI-compatible API?"
            ) from None
        if not isinstance(event, dict) or not isinstance(event.get("choices"), list):
            raise RemoteProtocolError(f"{self._where} answered JSON without `choices`")
        return event
