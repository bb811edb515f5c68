"""The index's disk cache of per-file tags, which never fails the index.

A cache holds only what can be recomputed, so every failure degrades to recomputing: an entry
that cannot be read (garbage, truncated, from another version) is a miss and is dropped; a
failed write (a full disk, a read-only or vanished directory) turns the cache off for the
rest of the session, and `error` says why.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import diskcache

logger = logging.getLogger(__name__)


class TagCache:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.error: str | None = None
        self._cache: diskcache.Cache | None = None
        try:
            self._cache = diskcache.Cache(str(directory))
        except Exception as exc:
            self._fail("open", exc)

    def get(self, key: str) -> Any:
        cache = self._cache
        if cache is None:
            return None
        try:
            return cache.get(key)
        except Exception as exc:
            logger.warning("index cache: dropping unreadable entry %s (%s)", key, exc)
            with contextlib.suppress(Exception):
                cache.delete(key)
            return None

    def set(self, key: str, value: Any) -> None:
        cache = self._cache
        if cache is None:
            return
        try:
            cache.set(key, value)
        except Exception as exc:
            self._fail("write", exc)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes inside are one commit; a failing one turns the cache off."""
        cache = self._cache
        if cache is None:
            yield
            return
        try:
            transaction = cache.transact()
            transaction.__enter__()
        except Exception as exc:
            self._fail("write", exc)
            yield
            return
        try:
            yield
        finally:
            try:
                transaction.__exit__(None, None, None)
            except Exception as exc:
                self._fail("write", exc)

    def close(self) -> None:
        if self._cache is not None:
            with contextlib.suppress(Exception):
                self._cache.close()

    def _fail(self, what: str, exc: Exception) -> None:
        if self.error is None:
            self.error = f"could not {what} the index cache ({exc}): indexing goes on without it"
            logger.warning("%s", self.error)
        self.close()
        self._cache = None
