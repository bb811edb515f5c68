"""Request shaping: put a boundary the server keeps just before the text a keystroke changes.

A server holding a hybrid model cannot roll its DeltaNet state back; it resumes a prompt only
at a state it kept. llama-server keeps checkpoints 4 and 4 + n_ubatch tokens before the end of
each `/v1/completions` prompt, at the start of the last "user message" (which a raw prompt
names through `message_delimiters`), and otherwise at most every `--checkpoint-min-step`
tokens. So for llama-server the backend

- names `<|file_sep|>` as the user-message delimiter: the last one opens the current file, so
  every request leaves a checkpoint where the repository context ends;
- sends a prefill-only request (a "warm" request, max_tokens = 1) ending where the prompt's
  stable segments end (REPO + FILE_PREFIX: what typing leaves alone) whenever that text
  changed, before the completion itself: the checkpoint 4 tokens before its end stays valid
  while the user types in the LOCAL window, so a keystroke anywhere in it re-reads at most that
  window and the suffix, never the file or the repository.

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
# A stable prefix shorter than this is re-read faster than a second request is sent.
MIN_WARM_CHARS = 2_000
LLAMA_SERVER_EXTRAS: Mapping[str, Any] = {
    "cache_prompt": True,
    "message_delimiters": [{"role": "user", "delimiter": FILE_SEP}],
}


def shaping_enabled(setting: ShapeRequests, server: str) -> bool:
    return setting == "on" or (setting == "auto" and server == LLAMA_SERVER)


def server_extras(server: str) -> Mapping[str, Any]:
    """Fields added to every `/v1/completions` body for this kind of server."""
    return LLAMA_SERVER_EXTRAS if server == LLAMA_SERVER else {}


def stable_prefix(prompt: Prompt) -> str:
    """The text of the leading segments a keystroke leaves alone (those before LOCAL)."""
    parts = []
    for segment in prompt.segments:
        if segment.kind >= SegmentKind.LOCAL:
            break
        parts.append(segment.text)
    return "".join(parts)


class WarmPlanner:
    """Remembers the stable prefix the server last saw (by digest) and says when a prompt's
    prefix is new, so that a warm request should go first."""

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
