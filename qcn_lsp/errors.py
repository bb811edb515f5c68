"""The JSON-RPC error of a request that cannot be served now."""

from __future__ import annotations

from pygls.exceptions import JsonRpcException


class RequestFailed(JsonRpcException):
    """The model or the index is not usable, or there is nothing to do; the message says why
    and what to do next."""

    CODE = -32803  # LSP RequestFailed
