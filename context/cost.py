"""What the entries of a repository context cost in the prompt, in tokens.

The prompt's layout (markers, separators) belongs to whoever renders it: the assembler only asks
a ``ContextCost`` what the header and each file entry will cost, so the budget holds for that
rendering without context/ knowing it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

TokenCounter = Callable[[str], int]

CHARS_PER_TOKEN = 3.5  # about right for code with a BPE vocabulary


def estimate_tokens(text: str) -> int:
    """Cheap token estimate for code, from its length."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


class ContextCost(Protocol):
    """Tokens the entries of a repository context take once rendered into a prompt.

    Implementations must be hashable and give the same answer for the same arguments: costs
    are cached per cost object."""

    def header(self, repo_name: str) -> int:
        """The entry that opens the context (the repository's name)."""
        ...

    def file(self, path: str, content: str) -> int:
        """One file's entry: its path and ``content`` (which has no trailing newline)."""
        ...


@dataclass(frozen=True, slots=True)
class CharacterCost:
    """A format-free estimate: the characters of names and contents, plus a few tokens per
    entry for whatever markers the renderer adds."""

    entry_tokens: int = 2

    def header(self, repo_name: str) -> int:
        return estimate_tokens(repo_name) + self.entry_tokens

    def file(self, path: str, content: str) -> int:
        return estimate_tokens(path) + estimate_tokens(content) + self.entry_tokens


@dataclass(frozen=True, slots=True)
class RenderedCost:
    """Exact costs: each entry rendered as the prompt will hold it, then counted by the
    model's tokenizer."""

    count_tokens: TokenCounter
    render_header: Callable[[str], str]
    render_file: Callable[[str, str], str]

    def header(self, repo_name: str) -> int:
        return self.count_tokens(self.render_header(repo_name))

    def file(self, path: str, content: str) -> int:
        return self.count_tokens(self.render_file(path, content))
