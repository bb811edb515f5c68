"""What one request cost: written to logs and read by the benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

RestoreKind = Literal["none", "append", "partial", "full", "disk", "server"]


@dataclass
class RequestReport:
    """Per-request accounting.

    `restore_kind`: "none" = prefilled from scratch; "append" = the live state was a prefix of
    the prompt; "partial" = a recurrent-state checkpoint was restored (or, on a plain
    transformer, the attention cache trimmed) at `restored_from`; "full" = a full in-memory
    snapshot; "disk" = a persisted full snapshot; "server" = a remote server's own cache served
    `reused_tokens` (how, it does not say). `ms` holds the phases `tokenize, restore,
    prefill, first_token, decode, total` (first_token is measured from the request start).
    """

    prompt_tokens: int = 0
    reused_tokens: int = 0
    prefilled_tokens: int = 0
    restored_from: int | None = None
    restore_kind: RestoreKind = "none"
    generated_tokens: int = 0
    cancelled: bool = False
    ms: dict[str, float] = field(default_factory=dict)
    lane: str = "interactive"
    checkpoints_taken: int = 0
    warmup: bool = False
    warmup_tokens: int = 0
    warmup_ms: float = 0.0
    # Hex sha256 of the prompt's token ids (BOS included) as little-endian int32: two requests
    # with the same digest conditioned the model on the same tokens.
    prompt_digest: str | None = None

    def summary(self) -> str:
        phases = " ".join(f"{name}={value:.1f}" for name, value in self.ms.items())
        warm = (
            f" warmup-before={self.warmup_tokens}/{self.warmup_ms:.0f}ms"
            if self.warmup_tokens
            else ""
        )
        return (
            f"[{self.lane}{' warm-up' if self.warmup else ''}] prompt={self.prompt_tokens} reused={self.reused_tokens} "
            f"prefilled={self.prefilled_tokens} restore={self.restore_kind}"
            f"@{self.restored_from} generated={self.generated_tokens} "
            f"checkpoints+={self.checkpoints_taken} cancelled={self.cancelled}{warm} ms: {phases}"
        )
