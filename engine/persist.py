"""Full state snapshots on disk, so that an editor restart does not pay the repository prefill.

Entries live in a `diskcache.Cache` and are keyed by the model file's identity (path, size,
mtime, hash of its first MiB), the llama-cpp-python version, the context configuration and the
token prefix (length + digest). Each value is `header + state`; the header repeats the key
fields and carries a CRC32 of the state, so a corrupt or mismatched entry is detected, deleted
and never loaded. Writes run on a thread of their own: the llama worker only copies the state.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import struct
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import diskcache

from engine.host import LLAMA_CPP_VERSION, StateBytes

logger = logging.getLogger(__name__)

MAGIC = b"QCNSTATE1"
# (n_tokens, prefix digest, parent (n_tokens, digest) of a partial entry or None)
IndexEntry = tuple[int, bytes, tuple[int, bytes] | None]
_HEADER_LEN = struct.Struct("<I")


def _identity(entry: IndexEntry) -> tuple[int, bytes, bool]:
    """What names an entry's value: a full and a partial entry may share a position."""
    return entry[0], entry[1], entry[2] is not None


def model_identity(path: Path) -> str:
    """Changes whenever the model file is replaced or rewritten."""
    stat = path.stat()
    with path.open("rb") as fh:
        head = hashlib.sha256(fh.read(1 << 20)).hexdigest()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{head}"


class _HeaderThenData(io.RawIOBase):
    """A read-only stream of header + data, so diskcache can write both without a joined copy."""

    def __init__(self, header: bytes, data: StateBytes) -> None:
        self._parts = [memoryview(header), memoryview(data)]
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        while self._parts and self._offset >= len(self._parts[0]):
            self._parts.pop(0)
            self._offset = 0
        if not self._parts:
            return 0
        chunk = self._parts[0][self._offset : self._offset + len(target)]
        target[: len(chunk)] = chunk
        self._offset += len(chunk)
        return len(chunk)


class StateStore:
    """Persisted full snapshots for one model + context configuration.

    An entry is identified by (n_tokens, digest of the token prefix [0, n_tokens)). A small
    index of the entries of this scope lets a request find the longest persisted prefix of its
    prompt without knowing in advance where earlier sessions took their snapshots.

    Besides full snapshots, the index holds *partial* entries (recurrent state only) with the
    full snapshot they belong to, their parent: restoring the parent and then the partial
    state, and trimming the attention cache, gives the state at the partial's position, for
    any prompt that shares its prefix, so a restart serves a cursor anywhere in the file.
    """

    def __init__(
        self,
        directory: Path,
        *,
        model_path: Path,
        context_signature: str,
        size_limit: int,
        max_entries: int = 64,
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._cache = diskcache.Cache(str(directory), size_limit=size_limit)
        self._scope = "|".join([model_identity(model_path), LLAMA_CPP_VERSION, context_signature])
        self._index_key = "index-" + hashlib.sha256(self._scope.encode()).hexdigest()
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._index: list[IndexEntry] = []
        try:
            rows = self._cache.get(self._index_key, default=[])
        except Exception:  # an unreadable index: its entries are simply not found
            logger.warning("persisted state: unreadable index, starting with none")
            rows = []
        for row in rows if isinstance(rows, list) else []:
            try:
                n, d, parent_n, parent_d = row
                parent = None if parent_n is None else (int(parent_n), bytes.fromhex(parent_d))
                self._index.append((int(n), bytes.fromhex(d), parent))
            except (TypeError, ValueError):
                continue  # an index row of another format: its entry is simply not found
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qcn-state-writer")
        self._pending: set[str] = set()
        self.loads = 0
        self.rejected = 0
        self.writes = 0
        self.failed_writes = 0

    def _key(self, digest: bytes, n_tokens: int, partial: bool = False) -> str:
        kind = "partial" if partial else "full"
        scoped = f"{self._scope}|{n_tokens}|{digest.hex()}|{kind}".encode()
        return "state-" + hashlib.sha256(scoped).hexdigest()

    def contains(self, digest: bytes, n_tokens: int) -> bool:
        key = self._key(digest, n_tokens)
        try:
            return key in self._pending or key in self._cache
        except Exception:  # a broken database holds nothing usable
            return False

    def candidates(self, above: int, upto: int) -> list[IndexEntry]:
        """Persisted (n_tokens, digest, parent) with above < n_tokens <= upto, longest first;
        parent is None for full snapshots."""
        with self._lock:
            found = [entry for entry in self._index if above < entry[0] <= upto]
        return sorted(found, key=lambda entry: -entry[0])

    def save_async(
        self,
        digest: bytes,
        n_tokens: int,
        state: StateBytes,
        parent: tuple[int, bytes] | None = None,
    ) -> Future[None]:
        """Queue a write; the caller's thread returns at once. With `parent` (n_tokens, digest
        of a persisted full snapshot) `state` is a partial one that needs the parent first."""
        key = self._key(digest, n_tokens, partial=parent is not None)
        self._pending.add(key)
        return self._writer.submit(self._save, key, digest, n_tokens, state, parent)

    def _save(
        self,
        key: str,
        digest: bytes,
        n_tokens: int,
        state: StateBytes,
        parent: tuple[int, bytes] | None,
    ) -> None:
        try:
            meta = {
                "scope": self._scope,
                "n_tokens": n_tokens,
                "nbytes": len(state),
                "crc32": zlib.crc32(state),
            }
            meta_bytes = json.dumps(meta).encode()
            header = MAGIC + _HEADER_LEN.pack(len(meta_bytes)) + meta_bytes
            self._cache.set(key, _HeaderThenData(header, state), read=True)
            self._update_index(add=(n_tokens, digest, parent))
            self.writes += 1
        except Exception as exc:  # a full disk must not take the engine down
            self.failed_writes += 1
            log = logger.warning if self.failed_writes == 1 else logger.debug
            log("could not persist state %s (%s): the next start prefills it again", key, exc)
        finally:
            self._pending.discard(key)

    def _update_index(
        self, *, add: IndexEntry | None = None, remove: tuple[int, bytes] | None = None
    ) -> None:
        with self._lock:
            # Removing an entry removes the partial entries that depend on it as well.
            entries = [
                e
                for e in self._index
                if (add is None or _identity(e) != _identity(add))
                and (remove is None or remove not in (e[:2], e[2]))
            ]
            if add is not None:
                entries.append(add)
            for n, d, p in entries[: max(0, len(entries) - self._max_entries)]:
                self._cache.delete(self._key(d, n, partial=p is not None))
            self._index = entries[-self._max_entries :]
            self._cache.set(
                self._index_key,
                [
                    (n, d.hex(), None if p is None else p[0], None if p is None else p[1].hex())
                    for n, d, p in self._index
                ],
            )

    def load(self, digest: bytes, n_tokens: int, partial: bool = False) -> memoryview | None:
        """The state persisted for this prefix, or None (a bad entry is deleted and counted)."""
        key = self._key(digest, n_tokens, partial)
        try:
            handle = self._cache.get(key, default=None, read=True)
            if handle is None:
                self.drop(digest, n_tokens, partial)  # evicted by the size limit
                return None
            with handle:
                # Read into a writable buffer: llama.cpp reads the state from it in place.
                blob = bytearray(os.fstat(handle.fileno()).st_size)
                handle.readinto(blob)
        except Exception:
            logger.exception("could not read persisted state %s", key)
            self.rejected += 1
            self.drop(digest, n_tokens, partial)
            return None
        state = self._verify(blob, n_tokens)
        if state is None:
            self.drop(digest, n_tokens, partial)
            return None
        self.loads += 1
        return state

    def _verify(self, blob: bytearray, n_tokens: int) -> memoryview | None:
        try:
            if not blob.startswith(MAGIC):
                raise ValueError("bad magic")
            offset = len(MAGIC)
            (meta_len,) = _HEADER_LEN.unpack_from(blob, offset)
            offset += _HEADER_LEN.size
            meta = json.loads(bytes(blob[offset : offset + meta_len]))
            offset += meta_len
            state = memoryview(blob)[offset:]
            if meta["scope"] != self._scope or meta["n_tokens"] != n_tokens:
                raise ValueError("entry made for another model, version or prompt")
            if meta["nbytes"] != len(state) or meta["crc32"] != zlib.crc32(state):
                raise ValueError("checksum mismatch (corrupt or truncated)")
            return state
        except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as exc:
            logger.warning("dropping persisted state: %s", exc)
            self.rejected += 1
            return None

    def drop(self, digest: bytes, n_tokens: int, partial: bool = False) -> None:
        """Delete an entry; a full one takes the partial entries that depend on it along.
        The index forgets them even when the database cannot be written."""
        try:
            self._drop(digest, n_tokens, partial)
        except Exception as exc:
            logger.warning("persisted state: could not delete an entry (%s)", exc)
            with self._lock:
                self._index = [e for e in self._index if (n_tokens, digest) not in (e[:2], e[2])]

    def _drop(self, digest: bytes, n_tokens: int, partial: bool) -> None:
        self._cache.delete(self._key(digest, n_tokens, partial))
        if partial:
            with self._lock:
                self._index = [e for e in self._index if e[:2] != (n_tokens, digest) or not e[2]]
            self._update_index()
            return
        with self._lock:
            children = [e[:2] for e in self._index if e[2] == (n_tokens, digest)]
        for n, d in children:
            self._cache.delete(self._key(d, n, partial=True))
        self._update_index(remove=(n_tokens, digest))

    def flush(self) -> None:
        """Wait for queued writes (tests, shutdown)."""
        self._writer.submit(lambda: None).result()

    def stats(self) -> dict[str, int]:
        try:
            volume = int(self._cache.volume())
        except Exception:
            volume = -1  # the database cannot be read
        return {
            "entries": len(self._index),
            "bytes": volume,
            "loads": self.loads,
            "rejected": self.rejected,
            "writes": self.writes,
            "failed_writes": self.failed_writes,
        }

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._cache.close()
