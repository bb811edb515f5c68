"""The remote backend's options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from engine.errors import EngineError

ShapeRequests = Literal["auto", "on", "off"]


@dataclass(frozen=True)
class RemoteConfig:
    """Where the server is and how patiently to talk to it.

    `api_key` is the key itself (read by the caller from the environment variable the user
    named); it is left out of `repr` so that no log line or traceback carries it.
    `n_ctx` is used when the server does not say its context window.
    `shape_requests`: "auto" shapes requests only for servers whose cache needs it
    (llama-server, see `engine.remote.shaping`); "on" always, "off" never.
    """

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str = ""  # the variable's name, for messages
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 120.0
    retries: int = 3  # attempts after the first, on connect errors and 429 / 503
    backoff_s: float = 0.25  # the first retry's wait; doubled per retry
    max_retry_after_s: float = 10.0  # a longer Retry-After fails the request instead
    n_ctx: int = 32768
    shape_requests: ShapeRequests = "auto"

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EngineError(
                f"backend.baseUrl {self.base_url!r} is not an http(s) URL with a host; "
                "for example http://127.0.0.1:8080/v1"
            )
        if parts.username or parts.password:
            raise EngineError(
                "backend.baseUrl must not carry credentials; put the key in an environment "
                "variable and name it in backend.apiKeyEnv"
            )
        if not self.model:
            raise EngineError("backend.model is empty: set it to a model the server lists")

    @property
    def root_url(self) -> str:
        """The base URL without its trailing `/v1` (where llama-server and vLLM keep
        `/tokenize`)."""
        base = self.base_url.rstrip("/")
        return base[: -len("/v1")] if base.endswith("/v1") else base
