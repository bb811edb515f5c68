"""Request shaping: put a boundary the server keeps just before the text a keystroke changes.

A server holding a hybrid model cannot roll its DeltaNet state back; it resumes a prompt only
at a state it kept. llama-server keeps checkpoints 4 and 4 + n_ubatch tokens before the end of
each `/v1/completions` prompt, one at the start of the last "user message" (which a raw prompt
names through `message_delimiters`), and otherwise none closer than `--checkpoint-min-step`;
it resumes from the newest checkpoint before the first changed token. So for llama-server the
backend

- names `<|file_sep|>` and blank lines (`\n\n`, `\n\n\n` tokens) as user-message
  delimiters: the last `<|file_sep|>` opens the current file, so every request leaves a
  checkpoint where the repository context ends, and a prefill leaves one at a blank line every
  `--checkpoint-min-step` tokens (512 recommended, docs/remote.md), so a jump inside the file
  re-reads from the blank line before the new spot, not the file or the repository;
- sends a prefill-only request (a "warm" request, max_tokens = 1) that ends at the start of
  the cursor's line whenever the text before that line changed (another line, another spot,
  another file), just before the completion itself. Its checkpoint 4 tokens before its end is
  then the newest one before anything typed on that line, so each keystroke re-reads the line
  up to the cursor and the suffix, instead of the 4 + n_ubatch tokens its own previous request
  left. The cut is at a line start, where the tokenization of the whole prompt and of the warm
  prompt agree (a pre-token never spans a newline that ends a line).

vLLM keeps GDN state on its block grid and SGLang at multiples of 64 tokens whatever the
requests look like, so neither is shaped by default ("auto").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from engine.formats import FILE_SEP
from engine.remote.config import ShapeRequests
from engine.segments import Prompt, SegmentKind

LLAMA_SERVER = "llama-server"
# A prefix shorter than this is re-read faster than a second request is sent.
MIN_WARM_CHARS = 2_000
LLAMA_SERVER_EXTRAS: Mapping[str, Any] = {
    "cache_prompt": True,
    "message_delimiters": [
        {"role": "user", "delimiter": delimiter} for delimiter in (FILE_SEP, "\n\n", "\n\n\n")
    ],
}
# Not shaping but accounting: llama-server's `timings` (prompt_n, cache_n) in every chunk, so
# a stream closed early (a completion stopped at its block end) still says what it cost.
LLAMA_SERVER_TIMINGS: Mapping[str, Any] = {"timings_per_token": True}


def shaping_enabled(setting: ShapeRequests, server: str) -> bool:
    return setting == "on" or (setting == "auto" and server == LLAMA_SERVER)


def server_extras(server: str, shaping: bool) -> Mapping[str, Any]:
    """Fields added to every `/v1/completions` body for this kind of server."""
    if server != LLAMA_SERVER:
        return {}
    return {**LLAMA_SERVER_TIMINGS, **(LLAMA_SERVER_EXTRAS if shaping else {})}


def warm_boundary(prompt: Prompt) -> str:
    """The prompt up to the start of the cursor's line: the segments before the TAIL (the
    text after the cursor), cut after their last newline."""
    parts = []
    for segment in prompt.segments:
        if segment.kind >= SegmentKind.TAIL:
            break
        parts.append(segment.text)
    before_cursor = "".join(parts)
    return before_cursor[: before_cursor.rfind("\n") + 1]


class WarmPlanner:
    """Remembers the boundary the server last prefilled to its end (by digest) and says when
    a prompt's boundary is new, so that a warm request should go first."""

    def __init__(self) -> None:
        self._last: bytes | None = None

    def needs_warm(self, prefix: str) -> bool:
        return len(prefix) >= MIN_WARM_CHARS and _digest(prefix) != self._last

    def seen(self, prefix: str) -> None:
        self._last = _digest(prefix)

    def forget(self) -> None:
        """The server may have lost what it kept (an error, a restart)."""
        self._last = None


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
