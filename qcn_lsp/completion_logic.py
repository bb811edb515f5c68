"""Pure completion helpers: debounce, typed-ahead reuse, post-processing. No LSP, no model."""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field

# Automatic requests wait this multiple of the mean gap between the user's recent requests
# (Tabby's rule): a fast typist's next key usually arrives before the model would answer.
TYPING_GAP_FACTOR = 1.0
DEBOUNCE_MAX_FACTOR = 4
TYPING_HISTORY = 8
# A gap longer than this is a pause, not typing rhythm.
TYPING_PAUSE_S = 1.5
# What a completion never puts into a buffer: C0 and C1 control characters other than tab and
# line feed (a bare carriage return included: the document's own line end is put back after
# the text is cleaned), U+2028/U+2029 (editors break lines there, or warn about "unusual line
# terminators") and the bidirectional overrides and isolates (code that reads unlike it runs).
UNWANTED_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@dataclass
class TypingRhythm:
    """Times of recent automatic completion requests of one document."""

    times: deque[float] = field(default_factory=lambda: deque(maxlen=TYPING_HISTORY))

    def record(self, now: float | None = None) -> None:
        self.times.append(time.monotonic() if now is None else now)

    def mean_gap_s(self) -> float | None:
        gaps = [b - a for a, b in zip(self.times, list(self.times)[1:], strict=False)]
        gaps = [gap for gap in gaps if gap < TYPING_PAUSE_S]
        return sum(gaps) / len(gaps) if gaps else None


def debounce_s(base_ms: int, rhythm: TypingRhythm, line_prefix: str, invoked: bool) -> float:
    """Seconds to wait before starting the model for an automatic request.

    Explicit invocations and the start of a line (Cody's rule: the user paused to think) start
    at once; otherwise clamp(base, 4 x base, k x mean typing gap).
    """
    if invoked or not line_prefix.strip() or base_ms <= 0:
        return 0.0
    base = base_ms / 1000
    gap = rhythm.mean_gap_s()
    if gap is None:
        return base
    return min(max(base, TYPING_GAP_FACTOR * gap), DEBOUNCE_MAX_FACTOR * base)


def is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def inside_word(line_prefix: str, line_suffix: str) -> bool:
    """The cursor has an identifier character right after it (automatic completion waits)."""
    return bool(line_suffix) and is_word_char(line_suffix[0])


def word_start(line_prefix: str) -> int:
    """Index in `line_prefix` where the identifier being typed starts."""
    start = len(line_prefix)
    while start > 0 and is_word_char(line_prefix[start - 1]):
        start -= 1
    return start


@dataclass
class Suggestion:
    """A completion (finished or growing) and the document text it was made for."""

    prefix: str
    suffix: str
    text: str = ""
    done: bool = False

    def same_state(self, prefix: str, suffix: str) -> bool:
        """Made for exactly this text around the cursor (a request asked again)."""
        return prefix == self.prefix and suffix == self.suffix

    def along(self, prefix: str, suffix: str) -> bool:
        """The user typed the first characters of this suggestion, as far as it is written."""
        if suffix != self.suffix or not prefix.startswith(self.prefix):
            return False
        typed = prefix[len(self.prefix) :]
        if not typed:
            return False
        return self.text.startswith(typed) or (not self.done and typed.startswith(self.text))

    def typed_ahead(self, prefix: str, suffix: str) -> str | None:
        """The rest of this suggestion if the user typed its first characters, else None."""
        if suffix != self.suffix or not prefix.startswith(self.prefix):
            return None
        typed = prefix[len(self.prefix) :]
        if not typed or not self.text.startswith(typed):
            return None
        rest = self.text[len(typed) :]
        return rest if rest else None


def trim_suffix_overlap(text: str, suffix: str) -> str:
    """Drop the end of `text` that repeats what already follows the cursor.

    Compares against the rest of the cursor's line and, for multi-line text, the next lines:
    the longest tail of `text` that is a prefix of `suffix` (ignoring trailing blanks) goes.
    """
    stripped = text.rstrip()
    if not stripped or not suffix.strip():
        return text
    probe = suffix.lstrip(" \t")
    for size in range(min(len(stripped), len(probe)), 0, -1):
        tail = stripped[-size:]
        if probe.startswith(tail):
            return stripped[:-size]
    return text


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def block_end(text: str, line_prefix: str) -> int | None:
    """Where a multi-line completion leaves the block the cursor is in, as an offset into
    `text`; None while it has not.

    The first line continues the cursor's line; a later non-blank line indented less than the
    cursor line's indentation closes the block. The answer is final once that line has a
    non-blank character: text written after it cannot change it.
    """
    lines = text.split("\n")
    block_indent = _indent(line_prefix) if line_prefix.strip() else len(line_prefix)
    offset = len(lines[0]) + 1
    for line in lines[1:]:
        if line.strip() and _indent(line) < block_indent:
            return offset
        offset += len(line) + 1
    return None


def cut_at_block_end(text: str, line_prefix: str) -> str:
    """Stop a multi-line completion where it leaves the block the cursor is in."""
    end = block_end(text, line_prefix)
    return text if end is None else text[:end].rstrip()


def clean_text(text: str) -> str:
    """Model text as it may enter a buffer: line ends as `\\n`, no UNWANTED_CHARS."""
    return UNWANTED_CHARS.sub("", text.replace("\r\n", "\n"))


def post_process(text: str, line_prefix: str, suffix: str, line_end: str = "\n") -> str:
    """Cleaning, block end, then suffix overlap; a result of only whitespace becomes empty;
    line ends as the document's (`line_end`)."""
    text = cut_at_block_end(clean_text(text), line_prefix)
    text = trim_suffix_overlap(text, suffix.replace("\r\n", "\n"))
    if not text.strip():
        return ""
    return text if line_end == "\n" else text.replace("\n", line_end)


def streamed_text(text: str, line_prefix: str, suffix: str, line_end: str = "\n") -> str:
    """What to show of a completion still being written: post-processed as the final text
    will be, less trailing whitespace, so that every streamed text is a prefix of the final
    one and ghost text only grows."""
    return post_process(text, line_prefix, suffix, line_end).rstrip()
