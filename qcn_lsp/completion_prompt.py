"""The completion prompt for a cursor, and the warm-ups that follow a completion.

The one place that builds them: the `Completer` and `bench/patterns.py` (which measures what
the server sends) both call `CompletionPrompts`. No LSP here: a cursor is a path and the text
split at the cursor.

Warm-ups (`Backend.warm`) prefill, while the user reads or thinks, what the next request will
need and the live state lacks. After a completion, one of:

- the start of the line of another spot of this file visited lately, below the cursor: the
  request just served overwrote everything after the cursor's line, so going back there (the
  call site below an edited signature, the cursor after an edit near the top) would re-read
  the text in between;
- otherwise the prompt as it will be if the user accepts the suggestion, up to the new cursor:
  accepting then costs the text after the cursor only.

Both end before the text after the cursor (TAIL), the part a keystroke changes anyway. At a
typing pause the repository context is re-ranked (`ContextAssembler.idle`); a changed one is
warmed at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.backend import Backend
from engine.formats import clip_suffix, fim_prompt
from engine.segments import Prompt, SegmentKind

if TYPE_CHECKING:
    from context.assemble import ContextAssembler, RepoContext
    from context.index import RepoIndex
    from context.spots import CursorSpots

# Characters sampled to estimate the tokenizer's characters per token, tokens kept free for
# the FIM markers and the path, and the share of the estimated room the file prefix may fill.
SAMPLE_CHARS = 4_000
PROMPT_MARGIN_TOKENS = 64
UTF8_MAX_BYTES = 4
PREFIX_FILL = 0.9
# Files whose recent cursor spots are remembered for warm-ups.
MAX_SPOT_FILES = 32


@dataclass(frozen=True)
class PromptSettings:
    budget_tokens: int  # repository context (context.budgetTokens)
    suffix_chars: int  # completion.suffixChars
    max_tokens: int  # completion.maxTokens


@dataclass(frozen=True)
class CursorText:
    """A cursor: the file's path and its text before and after the cursor."""

    path: str
    prefix: str
    suffix: str

    @property
    def source(self) -> str:
        return self.prefix + self.suffix

    @property
    def line(self) -> int:
        return self.prefix.count("\n")

    @property
    def column(self) -> int:
        return len(self.prefix) - (self.prefix.rfind("\n") + 1)


RepoFiles = tuple[str, tuple[tuple[str, str], ...]]  # (repository name, (path, content) files)


@dataclass(frozen=True)
class BuiltPrompt:
    prompt: Prompt
    cursor: CursorText
    repo: RepoFiles
    epoch: int | None  # the assembler's epoch of `repo` (None: no repository context)
    repo_tokens: int  # what the repository context may take (the file prefix is cut for it)


class CompletionPrompts:
    """Prompts for cursors: repository context (one assembler per index, so the repository
    prefix stays stable), the file's prefix cut to fit, the text after the cursor."""

    def __init__(self) -> None:
        self._assembler: ContextAssembler | None = None
        self._assembler_index: RepoIndex | None = None
        self._chars_per_token: dict[str, float] = {}
        self._spots: dict[str, CursorSpots] = {}
        self._latest: BuiltPrompt | None = None

    def build(
        self,
        cursor: CursorText,
        backend: Backend,
        index: RepoIndex | None,
        settings: PromptSettings,
    ) -> BuiltPrompt:
        """The prompt of a completion request at `cursor` (a visit of its spot)."""
        self._visit(cursor)
        budget = _repo_budget(backend, settings)
        repo, epoch = self._repo_context(cursor, backend.count_tokens, index, budget)
        built = self._prompt(cursor, backend, repo, epoch, settings, budget if repo[1] else 0)
        self._latest = built
        return built

    def warmup(
        self, built: BuiltPrompt, suggestion: str, backend: Backend, settings: PromptSettings
    ) -> Prompt | None:
        """What to warm after the completion of `built` answered `suggestion` (module
        docstring); None when there is nothing worth it."""
        cursor = built.cursor
        below = self._spot_below(cursor)
        if below is not None:
            target = CursorText(cursor.path, cursor.source[:below], cursor.source[below:])
            return self._with_repo(built, target, backend, settings).before(SegmentKind.LINE)
        if not suggestion:
            return None
        accepted = CursorText(cursor.path, cursor.prefix + suggestion, cursor.suffix)
        return self._with_repo(built, accepted, backend, settings).before(SegmentKind.TAIL)

    def at_pause(self, backend: Backend, settings: PromptSettings) -> Prompt | None:
        """The user paused: re-rank the repository context for the latest cursor; the prompt to
        warm if it changed, else None."""
        latest, assembler = self._latest, self._assembler
        if latest is None or assembler is None or latest.epoch is None:
            return None
        context = assembler.idle()
        if context is None or context.epoch == latest.epoch:
            return None
        repo = _repo_files(context)
        repo_tokens = _repo_budget(backend, settings) if repo[1] else 0
        built = self._prompt(latest.cursor, backend, repo, context.epoch, settings, repo_tokens)
        self._latest = built
        return built.prompt.before(SegmentKind.TAIL)

    # -- the parts --------------------------------------------------------------------------

    def _with_repo(
        self, built: BuiltPrompt, cursor: CursorText, backend: Backend, settings: PromptSettings
    ) -> Prompt:
        return self._prompt(
            cursor, backend, built.repo, built.epoch, settings, built.repo_tokens
        ).prompt

    def _prompt(
        self,
        cursor: CursorText,
        backend: Backend,
        repo: RepoFiles,
        epoch: int | None,
        settings: PromptSettings,
        repo_tokens: int,
    ) -> BuiltPrompt:
        # The current file gets what is left after the repository context, the answer, the
        # suffix and the FIM markers. Characters per token are sampled from the text before the
        # cursor, so the file prefix is cut before the engine would refuse the prompt.
        n_ctx = backend.info().n_ctx
        suffix_chars = settings.suffix_chars
        suffix = clip_suffix(cursor.suffix, suffix_chars)
        room = n_ctx - settings.max_tokens - repo_tokens - PROMPT_MARGIN_TOKENS
        max_prefix_chars: int | None = None
        # Every token covers at least one UTF-8 byte (a character is at most 4): most files
        # surely fit, and only longer ones pay for sampling the tokenizer on the keystroke path.
        if UTF8_MAX_BYTES * (len(cursor.prefix) + len(suffix)) > room:
            # Sampled once per file: a budget that moved with every keystroke would move the
            # cut, and the engine would re-read the whole file.
            chars_per_token = self._chars_per_token.get(cursor.path)
            if chars_per_token is None:
                sample = cursor.prefix[-SAMPLE_CHARS:] or "x"
                chars_per_token = len(sample) / max(1, backend.count_tokens(sample))
                self._chars_per_token[cursor.path] = chars_per_token
            prefix_room = room - suffix_chars / chars_per_token  # not len(suffix): see above
            max_prefix_chars = max(0, int(prefix_room * chars_per_token * PREFIX_FILL))
        prompt = fim_prompt(
            repo[0],
            repo[1],
            cursor.path,
            cursor.prefix,
            cursor.suffix,
            suffix_chars=suffix_chars,
            max_prefix_chars=max_prefix_chars,
        )
        return BuiltPrompt(prompt, cursor, repo, epoch, repo_tokens)

    def _repo_context(
        self,
        cursor: CursorText,
        count_tokens: Callable[[str], int],
        index: RepoIndex | None,
        budget: int,
    ) -> tuple[RepoFiles, int | None]:
        """Ranked repository files for the cursor; none while the index is not built."""
        if index is None or budget <= 0:
            return (Path(cursor.path).parent.name, ()), None
        if self._assembler is None or self._assembler_index is not index:
            from context.assemble import ContextAssembler
            from context.cost import RenderedCost
            from engine.formats import repo_file_text, repo_header_text

            cost = RenderedCost(count_tokens, repo_header_text, repo_file_text)
            self._assembler = ContextAssembler(index, cost)
            self._assembler_index = index
        context = self._assembler.assemble(
            cursor.path, cursor.source, cursor.line, cursor.column, budget
        )
        return _repo_files(context), context.epoch

    def _visit(self, cursor: CursorText) -> None:
        from context.spots import CursorSpots

        spots = self._spots.pop(cursor.path, None) or CursorSpots()
        self._spots[cursor.path] = spots  # most recent file last
        while len(self._spots) > MAX_SPOT_FILES:
            del self._spots[next(iter(self._spots))]
        spots.visit(cursor.line, cursor.column)

    def _spot_below(self, cursor: CursorText) -> int | None:
        """Offset of the line start of the latest other spot below the cursor's line."""
        spots = self._spots.get(cursor.path)
        if spots is None:
            return None
        line = cursor.line
        source = cursor.source
        for spot, _weight in spots.weighted():
            if spot.line - line > spots.radius:
                offset = _line_offset(source, spot.line)
                if offset is not None:
                    return offset
        return None


def _repo_budget(backend: Backend, settings: PromptSettings) -> int:
    """Tokens of repository context: the setting, at most half the window."""
    return min(settings.budget_tokens, backend.info().n_ctx // 2)


def _repo_files(context: RepoContext) -> RepoFiles:
    return context.repo_name, tuple((f.path, f.content) for f in context.files)


def _line_offset(text: str, line: int) -> int | None:
    """Offset of the start of line `line` (0-based) in `text`; None past the end."""
    offset = 0
    for _ in range(line):
        offset = text.find("\n", offset) + 1
        if offset == 0:
            return None
    return offset
