"""HTTP to one OpenAI-compatible server: the configured host only, bounded retries, and every
failure turned into a `RemoteError` that says what to do.

Retries (connect errors, 429, 503; `Retry-After` honoured up to a limit) happen only before an
answer starts: once text has reached the caller, a failure is reported, never papered over.
Redirects are not followed and no proxy from the environment is used: the only host contacted
is the one in `backend.baseUrl`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from email.utils import parsedate_to_datetime
from time import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from engine.remote.config import RemoteConfig
from engine.remote.errors import (
    RemoteAuthError,
    RemoteDisconnected,
    RemoteError,
    RemoteHTTPError,
    RemoteModelMissing,
    RemoteProtocolError,
    RemoteTimeout,
    RemoteUnreachable,
    redact,
)

logger = logging.getLogger(__name__)

RETRY_STATUSES = (429, 503)
MAX_ERROR_BODY = 4096


class RemoteTransport:
    """An httpx client bound to one server; `close()` ends its connections."""

    def __init__(self, config: RemoteConfig) -> None:
        self.config = config
        self.where = config.base_url.rstrip("/")
        parts = urlsplit(self.where)
        self._origin = (parts.scheme, parts.hostname, parts.port)
        headers = {"Accept": "application/json, text/event-stream"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self._client = httpx.AsyncClient(
            base_url=self.where + "/",
            headers=headers,
            timeout=httpx.Timeout(config.read_timeout_s, connect=config.connect_timeout_s),
            follow_redirects=False,
            trust_env=False,  # no proxy or .netrc from the environment: only this host
            event_hooks={"request": [self._same_host]},
        )
        self.retried = 0

    async def _same_host(self, request: httpx.Request) -> None:
        url = request.url
        if (url.scheme, url.host, url.port) != self._origin:
            raise RemoteError(
                f"refusing to contact {url.host}: qcn-lsp talks only to the host of "
                f"backend.baseUrl ({self.where})"
            )

    def url(self, path: str) -> str:
        """`path` under the base URL (`completions`) or, with a leading slash, under the
        server's root (`/tokenize`)."""
        return self.config.root_url + path if path.startswith("/") else f"{self.where}/{path}"

    async def close(self) -> None:
        await self._client.aclose()

    # -- requests ---------------------------------------------------------------------------

    async def get_json(self, path: str) -> Any:
        async with self._exchange("GET", path, None) as response:
            return await _json_body(response, self.url(path))

    async def post_json(self, path: str, body: Mapping[str, Any]) -> Any:
        async with self._exchange("POST", path, body) as response:
            return await _json_body(response, self.url(path))

    @contextlib.asynccontextmanager
    async def stream(self, path: str, body: Mapping[str, Any]) -> AsyncIterator[httpx.Response]:
        """POST `body` and hold the response open; leaving the block closes the connection,
        which is how a server learns to stop generating."""
        async with self._exchange("POST", path, body) as response:
            yield response

    @contextlib.asynccontextmanager
    async def _exchange(
        self, method: str, path: str, body: Mapping[str, Any] | None
    ) -> AsyncIterator[httpx.Response]:
        url = self.url(path)
        attempt = 0
        while True:
            request = self._client.build_request(method, url, json=body)
            try:
                response = await self._client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt < self.config.retries:
                    await self._wait(attempt, None, url, str(exc) or type(exc).__name__)
                    attempt += 1
                    continue
                raise RemoteUnreachable(self._unreachable(exc)) from None
            except httpx.TimeoutException:
                raise RemoteTimeout(self._timeout_message()) from None
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                raise RemoteDisconnected(
                    f"the server at {self.where} closed the connection before answering "
                    f"({type(exc).__name__}); is it still running?"
                ) from None
            try:
                retry_after = _retry_after(response.headers.get("Retry-After"))
                if (
                    response.status_code in RETRY_STATUSES
                    and attempt < self.config.retries
                    and (retry_after is None or retry_after <= self.config.max_retry_after_s)
                ):
                    await self._wait(attempt, retry_after, url, f"HTTP {response.status_code}")
                    attempt += 1
                    continue
                if response.status_code >= 300:
                    await self._raise_for_status(response, path, retry_after)
                yield response
                return
            finally:
                await response.aclose()

    async def _wait(self, attempt: int, retry_after: float | None, url: str, why: str) -> None:
        delay = retry_after if retry_after is not None else self.config.backoff_s * 2**attempt
        self.retried += 1
        logger.info("%s: %s; retrying in %.2f s", url, why, delay)
        await asyncio.sleep(delay)

    # -- messages -----------------------------------------------------------------------------

    def _unreachable(self, exc: Exception) -> str:
        reason = redact(str(exc), self.config.api_key) or type(exc).__name__
        return (
            f"cannot reach the model server at {self.where} ({reason}); is it running, and "
            "is backend.baseUrl right?"
        )

    def _timeout_message(self) -> str:
        return (
            f"the server at {self.where} sent nothing for {self.config.read_timeout_s:g} s; "
            "it may be overloaded (raise backend.readTimeoutS for very long prompts)"
        )

    async def _raise_for_status(
        self, response: httpx.Response, path: str, retry_after: float | None
    ) -> None:
        status = response.status_code
        body = b""
        with contextlib.suppress(httpx.HTTPError):
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= MAX_ERROR_BODY:
                    break
        message = redact(_server_message(body), self.config.api_key)
        where = self.url(path)
        if status in (401, 403):
            if self.config.api_key:
                source = f"${self.config.api_key_env}" if self.config.api_key_env else "use"
                hint = f"check the API key in {source}"
            else:
                hint = (
                    "set backend.apiKeyEnv to the name of an environment variable that holds "
                    "the server's API key"
                )
            raise RemoteAuthError(
                f"the server at {self.where} refused the request (HTTP {status}: {message}); {hint}"
            )
        if 300 <= status < 400:
            location = response.headers.get("Location", "?")
            raise RemoteHTTPError(
                f"{where} redirects to {location}; qcn-lsp does not follow redirects (it "
                "contacts only the configured host): set backend.baseUrl to the final URL",
                status,
            )
        if status == 404 and "model" in message.lower():
            raise RemoteModelMissing(
                f"the server at {self.where} does not serve model {self.config.model!r} "
                f"({message}); set backend.model to one it lists"
            )
        if status == 404:
            raise RemoteHTTPError(
                f"no OpenAI-compatible endpoint at {where} (HTTP 404); check backend.baseUrl "
                "(it usually ends with /v1)",
                status,
            )
        if status in RETRY_STATUSES:
            later = f"in {retry_after:.0f} s" if retry_after is not None else "in a moment"
            raise RemoteHTTPError(
                f"the server at {self.where} is busy (HTTP {status}: {message}); try again {later}",
                status,
            )
        raise RemoteHTTPError(f"{where} answered HTTP {status}: {message}", status)


async def _json_body(response: httpx.Response, url: str) -> Any:
    try:
        body = await response.aread()
    except httpx.TimeoutException:
        raise RemoteTimeout(f"{url} stopped sending its answer") from None
    except httpx.HTTPError as exc:
        raise RemoteDisconnected(
            f"{url} closed the connection mid-answer ({type(exc).__name__})"
        ) from None
    try:
        return json.loads(body)
    except ValueError:
        kind = response.headers.get("content-type", "unknown type")
        raise RemoteProtocolError(
            f"{url} answered with {kind} that is not JSON ({_preview(body)}); is "
            "backend.baseUrl an OpenAI-compatible API?"
        ) from None


def _preview(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    return repr(text[:80] + ("..." if len(text) > 80 else ""))


def _server_message(body: bytes) -> str:
    """The human part of an error body: OpenAI's `{"error": {"message"}}`, FastAPI's
    `{"detail"}`, or the text itself."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace").strip()[:300] or "no details"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        for key in ("error", "detail", "message"):
            if isinstance(data.get(key), str):
                return str(data[key])[:300]
    return json.dumps(data)[:300]


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time())
    except (TypeError, ValueError):
        return None
