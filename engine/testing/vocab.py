"""The test models' Qwen-style byte-level BPE vocabulary, learned from a small code corpus.

Merges are learned (deterministically) from `merge_corpus.txt`, a few idioms of the languages an
LSP user edits most, so code takes fewer tokens than bytes as with a real vocabulary.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from itertools import pairwise

import gguf

# Qwen special tokens, in their order in the Qwen2.5/Qwen3 vocabulary. Those marked special
# there are CONTROL tokens (parsed only with special=True, not rendered in text); the tool-call
# tags are plain added tokens (USER_DEFINED: always one token, rendered as text), as in the
# real model's GGUF.
CONTROL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
USER_DEFINED_TOKENS: tuple[str, ...] = (
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
)

# Upper bound on learned merges; the built-in corpus yields fewer (a merge needs >= 2 uses).
MAX_MERGES = 2000

# The pre-tokenizer of llama.cpp's `qwen2` vocabulary, with \p{L} / \p{N} spelled for Python's
# `re` (letters are word characters that are neither digits nor "_"). Merges learned on these
# pieces are the ones llama.cpp can apply, since it never merges across them.
_PRETOKENIZE = re.compile(
    r"'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]"
    r"|(?:[^\r\n\w]|_)?[^\W\d_]+"
    r"|\d"
    r"| ?(?:[^\s\w]|_)+[\r\n]*"
    r"|\s*[\r\n]+"
    r"|\s+(?!\S)"
    r"|\s+"
)


def merge_corpus() -> str:
    """The text the merges are learned from (package data)."""
    return (
        resources.files("engine.testing").joinpath("merge_corpus.txt").read_text(encoding="utf-8")
    )


def _byte_symbols() -> list[str]:
    """The byte-level BPE alphabet: one printable character per byte value (GPT-2's mapping)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\N{INVERTED EXCLAMATION MARK}"), ord("\N{NOT SIGN}") + 1),
        *range(ord("\N{REGISTERED SIGN}"), ord("\N{LATIN SMALL LETTER Y WITH DIAERESIS}") + 1),
    ]
    symbols: dict[int, str] = {byte: chr(byte) for byte in printable}
    # Bytes without a printable character of their own take the code points from 256 upward.
    shifted = 256
    for byte in range(256):
        if byte not in symbols:
            symbols[byte] = chr(shifted)
            shifted += 1
    return [symbols[byte] for byte in range(256)]


def _learn_merges(text: str, max_merges: int) -> list[tuple[str, str]]:
    """Byte-level BPE merges learned from `text`, most frequent pair first.

    Ties are broken by the pair's text, so the result is the same on every run and platform.
    Pair counts are updated incrementally (only the words containing the merged pair are
    rescanned), which keeps learning a couple of thousand merges well under a second.
    """
    alphabet = _byte_symbols()
    word_counts = Counter(
        "".join(alphabet[byte] for byte in piece.encode("utf-8"))
        for piece in _PRETOKENIZE.findall(text)
    )
    words = [list(word) for word in word_counts]
    counts = list(word_counts.values())

    pair_count: Counter[tuple[str, str]] = Counter()
    pair_words: dict[tuple[str, str], set[int]] = {}
    for index, symbols in enumerate(words):
        for pair in pairwise(symbols):
            pair_count[pair] += counts[index]
            pair_words.setdefault(pair, set()).add(index)

    # Max-heap on count with lazy deletion: an entry is stale once its count differs.
    heap = [(-count, pair) for pair, count in pair_count.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while heap and len(merges) < max_merges:
        negative_count, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -negative_count:
            continue
        if -negative_count < 2:
            break
        merges.append(pair)
        merged = pair[0] + pair[1]
        touched: set[tuple[str, str]] = set()
        for index in sorted(pair_words.pop(pair, set())):
            symbols = words[index]
            for old in pairwise(symbols):
                pair_count[old] -= counts[index]
                touched.add(old)
            rewritten: list[str] = []
            position = 0
            while position < len(symbols):
                if symbols[position : position + 2] == [pair[0], pair[1]]:
                    rewritten.append(merged)
                    position += 2
                else:
                    rewritten.append(symbols[position])
                    position += 1
            words[index] = rewritten
            for new in pairwise(rewritten):
                pair_count[new] += counts[index]
                pair_words.setdefault(new, set()).add(index)
                touched.add(new)
        del pair_count[pair]
        touched.discard(pair)
        for changed in sorted(touched):
            if pair_count[changed] > 0:
                heapq.heappush(heap, (-pair_count[changed], changed))
            else:
                del pair_count[changed]
                pair_words.pop(changed, None)
    return merges


@dataclass(frozen=True)
class Vocabulary:
    """Tokens by id (byte-level BPE spelling; added tokens as plain text), their GGUF token
    types, the merges, and which tokens end, pad and begin a sequence."""

    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    eos: str = "<|endoftext|>"
    pad: str = "<|endoftext|>"
    bos: str = "<|endoftext|>"
    add_bos: bool = False

    def id_of(self, text: str) -> int:
        return self.tokens.index(text)


def build_vocabulary() -> Vocabulary:
    """Byte symbols (id = byte value), then one token per merge, then the special tokens."""
    merges = _learn_merges(merge_corpus(), MAX_MERGES)
    # Two merges can spell the same token ("ab c", "a bc"): it is listed once.
    tokens = list(dict.fromkeys([*_byte_symbols(), *(left + right for left, right in merges)]))
    token_types = [int(gguf.TokenType.NORMAL)] * len(tokens)
    tokens += [*CONTROL_TOKENS, *USER_DEFINED_TOKENS]
    token_types += [int(gguf.TokenType.CONTROL)] * len(CONTROL_TOKENS)
    token_types += [int(gguf.TokenType.USER_DEFINED)] * len(USER_DEFINED_TOKENS)
    return Vocabulary(
        tokens=tokens,
        token_types=token_types,
        merges=[f"{left} {right}" for left, right in merges],
    )
