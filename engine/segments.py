"""Prompts as ordered segments of decreasing stability.

The engine tokenizes each segment on its own (and memoizes by text), and keeps a checkpoint at
every boundary between segments: the caller knows where the stable parts end, the engine never
guesses it from the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class SegmentKind(IntEnum):
    """Stability rank of a segment: lower values change less often.

    In a completion prompt: FILE_PREFIX holds the current file in chunks that typing elsewhere
    leaves alone, LOCAL the cursor's chunk up to the start of the cursor's line (it changes
    when the cursor changes line), LINE the cursor's line up to the cursor (every keystroke).
    """

    SYSTEM = 0
    REPO = 1
    FILE_PREFIX = 2
    LOCAL = 3
    LINE = 4
    TAIL = 5


@dataclass(frozen=True)
class PromptSegment:
    """A piece of prompt text; special tokens such as `<|fim_prefix|>` are parsed as such."""

    text: str
    kind: SegmentKind


@dataclass(frozen=True)
class Conversation:
    """The messages and tools a chat prompt was rendered from: what a backend that takes
    messages rather than text (an OpenAI-compatible chat endpoint) sends instead."""

    messages: tuple[Mapping[str, str], ...]
    tools: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Prompt:
    segments: tuple[PromptSegment, ...]
    # Set by `engine.formats.chat_prompt`; not part of the prompt's identity.
    conversation: Conversation | None = field(default=None, compare=False)

    @property
    def text(self) -> str:
        return "".join(segment.text for segment in self.segments)

    def before(self, kind: SegmentKind) -> Prompt:
        """The prompt up to its first segment of `kind` or later (what a warm-up prefills)."""
        kept: list[PromptSegment] = []
        for segment in self.segments:
            if segment.kind >= kind:
                break
            kept.append(segment)
        return Prompt(tuple(kept))

    @classmethod
    def of(cls, *parts: tuple[str, SegmentKind]) -> Prompt:
        """`Prompt.of((text, kind), ...)`: shorthand used by tests and benchmarks."""
        return cls(tuple(PromptSegment(text, kind) for text, kind in parts))
