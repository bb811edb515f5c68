"""One answer's events → the text the LSP layer reads, and what the server says it cost.

Completions carry `choices[0].text`; chat carries `choices[0].delta.content` and, when the
server parses tool calls itself, `delta.tool_calls` pieces. Those are rendered back into the
`qwen3_coder` XML the model wrote (`engine.toolcalls.render_tool_call`), after the content,
so the LSP layer reads exactly what the local engine would give it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from engine.remote.errors import RemoteProtocolError
from engine.report import RequestReport
from engine.toolcalls import ToolCall, render_tool_call


@dataclass
class _PendingCall:
    name: str = ""
    arguments: str = ""


@dataclass
class AnswerReader:
    """Feed it every event of one answer with `read`; `tool_call_text()` at the end."""

    where: str
    deltas: int = 0
    finish_reason: str | None = None
    timings: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    _calls: dict[int, _PendingCall] = field(default_factory=dict)

    def read(self, event: dict[str, Any]) -> str:
        """The text this event adds."""
        if isinstance(event.get("timings"), dict):
            self.timings = event["timings"]
        if isinstance(event.get("usage"), dict):
            self.usage = event["usage"]
        choices = event.get("choices")
        if not isinstance(choices, list):
            raise RemoteProtocolError(f"{self.where} sent an event without `choices`")
        text = ""
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
            message = choice.get("delta") or choice.get("message")
            if isinstance(message, dict):
                text += message.get("content") or ""
                for piece in message.get("tool_calls") or ():
                    self._add_tool_call_piece(piece)
            elif isinstance(choice.get("text"), str):
                text += choice["text"]
        if text:
            self.deltas += 1
        return text

    def _add_tool_call_piece(self, piece: Any) -> None:
        if not isinstance(piece, dict):
            raise RemoteProtocolError(f"{self.where} sent a malformed tool call")
        index = piece.get("index", len(self._calls))
        call = self._calls.setdefault(index if isinstance(index, int) else 0, _PendingCall())
        function = piece.get("function") or {}
        call.name += function.get("name") or ""
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # some servers send the object, not its JSON
            arguments = json.dumps(arguments)
        call.arguments += arguments or ""

    def tool_call_text(self) -> str:
        """The server-parsed tool calls as the model's own XML ("" when there were none)."""
        rendered = []
        for _, call in sorted(self._calls.items()):
            try:
                arguments = json.loads(call.arguments) if call.arguments.strip() else {}
            except ValueError:
                raise RemoteProtocolError(
                    f"{self.where} sent tool call {call.name!r} with arguments that are not "
                    f"JSON: {call.arguments[:60]!r}"
                ) from None
            if not isinstance(arguments, dict):
                raise RemoteProtocolError(
                    f"{self.where} sent tool call {call.name!r} whose arguments are not an object"
                )
            rendered.append(render_tool_call(ToolCall(call.name, arguments)))
        return "\n".join(rendered)

    def report(self, lane: str, started: float, first: float | None, ended: float) -> RequestReport:
        """What the server said the request cost (llama-server's `timings`, else `usage`)."""
        timings, usage = self.timings, self.usage
        details = usage.get("prompt_tokens_details") or {}
        if timings:
            reused = int(timings.get("cache_n") or 0)
            prefilled = int(timings.get("prompt_n") or 0)
            prompt = reused + prefilled
            generated = int(timings.get("predicted_n") or 0)
        else:
            prompt = int(usage.get("prompt_tokens") or 0)
            reused = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
            prefilled = max(0, prompt - reused)
            generated = int(usage.get("completion_tokens") or 0)
        ms = {"total": (ended - started) * 1000}
        if first is not None:
            ms["first_token"] = (first - started) * 1000
        if timings.get("prompt_ms") is not None:
            ms["prefill"] = float(timings["prompt_ms"])
        if timings.get("predicted_ms") is not None:
            ms["decode"] = float(timings["predicted_ms"])
        return RequestReport(
            prompt_tokens=prompt,
            reused_tokens=reused,
            prefilled_tokens=prefilled,
            restore_kind="server",
            generated_tokens=generated or self.deltas,
            ms=ms,
            lane=lane,
        )
