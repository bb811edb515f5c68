"""What the completer warms after a completion (qcn_lsp.completion_prompt): no model needed."""

from __future__ import annotations

from typing import Any

from engine.backend import ModelInfo
from engine.formats import FIM_PREFIX, FIM_SUFFIX
from engine.segments import SegmentKind
from qcn_lsp.completion_prompt import CompletionPrompts, CursorText, PromptSettings

SETTINGS = PromptSettings(budget_tokens=0, suffix_chars=80, max_tokens=16)
TEXT = "".join(f"def f{n}(a):\n    return a + {n}\n\n" for n in range(60))


class Counting:
    """Enough of a Backend for building prompts: a window and a token count."""

    def info(self) -> ModelInfo:
        return ModelInfo("qwen3next", 4, True, 4096, 4096, "m.gguf")

    def count_tokens(self, text: str) -> int:
        return len(text) // 3

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"prompt building needs no {name}")


def _at(line: int, column: int = 0) -> CursorText:
    offset = sum(len(row) + 1 for row in TEXT.split("\n")[:line]) + column
    return CursorText("m.py", TEXT[:offset], TEXT[offset:])


def test_after_a_completion_above_a_spot_the_spot_below_is_warmed() -> None:
    prompts = CompletionPrompts()
    backend: Any = Counting()
    prompts.build(_at(150, 4), backend, None, SETTINGS)  # the call site, visited first
    upper = prompts.build(_at(20, 4), backend, None, SETTINGS)  # then the signature
    warm = prompts.warmup(upper, "x = 1", backend, SETTINGS)
    assert warm is not None
    line_start = _at(150).prefix
    assert warm.text.endswith(FIM_PREFIX + line_start)  # up to the lower spot's line start
    assert warm.segments[-1].kind == SegmentKind.LOCAL


def test_otherwise_the_accepted_suggestion_is_warmed_up_to_the_new_cursor() -> None:
    prompts = CompletionPrompts()
    backend: Any = Counting()
    built = prompts.build(_at(150, 4), backend, None, SETTINGS)
    warm = prompts.warmup(built, "x = 1", backend, SETTINGS)
    assert warm is not None
    assert warm.text.endswith(_at(150, 4).prefix + "x = 1") and FIM_SUFFIX not in warm.text
    # the request after accepting starts with the warmed tokens
    accepted = CursorText("m.py", _at(150, 4).prefix + "x = 1", _at(150, 4).suffix)
    after = prompts.build(accepted, backend, None, SETTINGS)
    assert after.prompt.text.startswith(warm.text)
    assert prompts.warmup(built, "", backend, SETTINGS) is None  # nothing shown: nothing to warm
