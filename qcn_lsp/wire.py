"""JSON shapes on the wire: lsprotocol types from JSON values, and the request report."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from lsprotocol.converters import get_converter

from engine.report import RequestReport

LSP_CONVERTER = get_converter()
StructuredT = TypeVar("StructuredT")


def structured(value: Any, kind: type[StructuredT]) -> StructuredT:
    """`value` (JSON) as an lsprotocol `kind`; ValueError naming both when it is not one."""
    try:
        return LSP_CONVERTER.structure(value, kind)
    except Exception as exc:
        raise ValueError(f"{json.dumps(value)} is not a {kind.__name__}") from exc


def report_dict(report: RequestReport) -> dict[str, Any]:
    """A RequestReport in the camelCase shape of qcn.status and qcn/completionProgress."""
    return {
        "promptTokens": report.prompt_tokens,
        "promptDigest": report.prompt_digest,
        "reusedTokens": report.reused_tokens,
        "prefilledTokens": report.prefilled_tokens,
        "restoreKind": report.restore_kind,
        "restoredFrom": report.restored_from,
        "generatedTokens": report.generated_tokens,
        "cancelled": report.cancelled,
        "warmup": report.warmup,
        "warmupTokens": report.warmup_tokens,
        "warmupMs": round(report.warmup_ms, 2),
        "ms": {name: round(value, 2) for name, value in report.ms.items()},
    }
