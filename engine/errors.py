"""Engine errors. Cancellation is reported with asyncio.CancelledError."""

from __future__ import annotations


class EngineError(Exception):
    """Base class of every error the engine raises on purpose; the message says what to do."""


class ModelLoadError(EngineError):
    """The model file is missing, truncated, not a GGUF, or of an architecture llama.cpp lacks."""


class ContextOverflowError(EngineError):
    """The prompt plus `max_tokens` does not fit in the context window."""

    def __init__(self, message: str, *, prompt_tokens: int, max_tokens: int, n_ctx: int) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.n_ctx = n_ctx
