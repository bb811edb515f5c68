"""Sampling and stopping parameters of one generation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GenerationParams:
    """`temperature == 0` means greedy decoding; the other sampling knobs are then unused."""

    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.01
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
