"""What the server says about itself at start: `/v1/models` (is the model listed? which
server is it? its context window), and its tokenizer's characters per token when it offers a
tokenize endpoint.

Why a calibrated estimate rather than a `/tokenize` call per `count_tokens`: the completer and
the context assembler count tokens on the keystroke path (every candidate file of the
repository context, samples of the current file), and a network round trip per count would
cost more than the completion. Their counts only size budgets, so a conservative estimate
(characters / the server's own characters-per-token on a fixed code sample, less a margin)
serves; servers without a tokenize endpoint (Ollama, DashScope, SGLang) get a default that
over-counts Qwen's tokenizer on code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from engine.remote.errors import RemoteError, RemoteModelMissing, RemoteProtocolError
from engine.remote.transport import RemoteTransport

logger = logging.getLogger(__name__)

# `owned_by` in /v1/models, as each server fills it.
SERVER_KINDS = {
    "llamacpp": "llama-server",
    "me": "llama-cpp-python",
    "vllm": "vllm",
    "sglang": "sglang",
    "library": "ollama",
    "ollama": "ollama",
}
# Qwen's tokenizer reads ~4.5 characters of code per token; 3 over-counts it safely.
DEFAULT_CHARS_PER_TOKEN = 3.0
# Counts are divided by the measured ratio less this share, so they err on the high side.
ESTIMATE_MARGIN = 0.1
CALIBRATION_TEXT = '''\
import os
from dataclasses import dataclass


@dataclass
class Entry:
    """One line of the index: a name, where it is defined, and how often it is used."""

    name: str
    path: str
    line: int
    uses: int = 0

    def describe(self) -> str:
        return f"{self.name} ({self.path}:{self.line}, used {self.uses} times)"


def load(root: str) -> list[Entry]:
    entries = []
    for directory, _, files in os.walk(root):
        for name in sorted(files):
            if name.endswith(".py"):
                entries.append(Entry(name[:-3], os.path.join(directory, name), 1))
    return entries
'''


@dataclass(frozen=True)
class ServerProbe:
    server: str  # llama-server, llama-cpp-python, vllm, sglang, ollama or unknown
    models: tuple[str, ...]
    n_ctx: int | None
    n_ctx_train: int | None
    n_vocab: int | None
    chars_per_token: float
    tokenizer: str  # where chars_per_token comes from

    def describe(self) -> str:
        window = f"context {self.n_ctx}" if self.n_ctx else "context not reported"
        return f"{self.server}, {window}, {self.chars_per_token:.2f} chars/token ({self.tokenizer})"


async def probe_server(transport: RemoteTransport, model: str) -> ServerProbe:
    """Ask the server which models it serves; RemoteModelMissing when `model` is not one."""
    listing = await transport.get_json("models")
    entries = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(entries, list):
        raise RemoteProtocolError(
            f"{transport.url('models')} did not answer with a model list (`data`); is "
            "backend.baseUrl an OpenAI-compatible API?"
        )
    entries = [e for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)]
    entry = next((e for e in entries if _names(e) & _accepted(model)), None)
    if entry is None:
        served = ", ".join(repr(e["id"]) for e in entries) or "none"
        raise RemoteModelMissing(
            f"the server at {transport.where} does not serve model {model!r}; it serves: "
            f"{served}. Set backend.model to one of them"
        )
    server = SERVER_KINDS.get(str(entry.get("owned_by", "")).lower(), "unknown")
    meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
    n_ctx = _int(meta.get("n_ctx")) or _int(entry.get("max_model_len"))
    chars_per_token, tokenizer = await _calibrate(transport, server, entry["id"])
    return ServerProbe(
        server=server,
        models=tuple(e["id"] for e in entries),
        n_ctx=n_ctx,
        n_ctx_train=_int(meta.get("n_ctx_train")),
        n_vocab=_int(meta.get("n_vocab")),
        chars_per_token=chars_per_token,
        tokenizer=tokenizer,
    )


def _names(entry: dict[str, Any]) -> set[str]:
    aliases = entry.get("aliases")
    extra = {a for a in aliases if isinstance(a, str)} if isinstance(aliases, list) else set()
    return {entry["id"], *extra}


def _accepted(model: str) -> set[str]:
    # Ollama lists `name:latest` for a model pulled as `name`.
    return {model, f"{model}:latest"}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


async def _calibrate(transport: RemoteTransport, server: str, model: str) -> tuple[float, str]:
    """The server tokenizer's characters per token on CALIBRATION_TEXT, when it has a
    tokenize endpoint; else the default."""
    requests = {
        "llama-server": ("/tokenize", {"content": CALIBRATION_TEXT}),
        "llama-cpp-python": ("/extras/tokenize", {"input": CALIBRATION_TEXT, "model": model}),
        "vllm": ("/tokenize", {"model": model, "prompt": CALIBRATION_TEXT}),
    }
    if server not in requests:
        return DEFAULT_CHARS_PER_TOKEN, "default estimate: the server has no tokenize endpoint"
    path, body = requests[server]
    try:
        answer = await transport.post_json(path, body)
    except RemoteError as exc:
        logger.info("tokenizer calibration failed, using the default estimate: %s", exc)
        return DEFAULT_CHARS_PER_TOKEN, "default estimate: the tokenize endpoint failed"
    tokens = answer.get("tokens") if isinstance(answer, dict) else None
    if not isinstance(tokens, list) or not tokens:
        return DEFAULT_CHARS_PER_TOKEN, "default estimate: the tokenize answer had no tokens"
    return len(CALIBRATION_TEXT) / len(tokens), f"measured with {path}"
