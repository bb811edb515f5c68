"""What can go wrong talking to a remote server, each with a message that says what to do."""

from __future__ import annotations

from engine.errors import EngineError


class RemoteError(EngineError):
    """A remote server could not serve a request."""


class RemoteUnreachable(RemoteError):
    """Nothing answers at the configured URL (refused, unknown host, connect timeout)."""


class RemoteAuthError(RemoteError):
    """The server refused the API key, or wants one (HTTP 401 / 403)."""


class RemoteModelMissing(RemoteError):
    """The server does not serve the configured model."""


class RemoteHTTPError(RemoteError):
    """Any other HTTP error status (4xx / 5xx / a redirect)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class RemoteProtocolError(RemoteError):
    """The answer is not what an OpenAI-compatible server sends (not JSON, wrong shape)."""


class RemoteStreamTruncated(RemoteError):
    """The event stream ended before the answer was complete."""


class RemoteDisconnected(RemoteError):
    """The server closed the connection in the middle of an answer (it stopped or crashed)."""


class RemoteTimeout(RemoteError):
    """The server took longer than the read timeout between two pieces of an answer."""


def redact(text: str, secret: str | None) -> str:
    """`text` with every occurrence of `secret` masked (server messages may echo a key)."""
    if not secret:
        return text
    return text.replace(secret, "***")
