"""RepoIndex: scans the workspace, keeps per-file tags in a SymbolGraph and a disk cache.

Writers (the build, editor and file events) are serialised by one lock and compute tags outside
the graph lock, which they hold only to apply a result. Readers on other threads take the graph
lock for a whole read (``with index.reading() as graph:``), so they never see a half-applied
update, and wait at most for one file's update to be applied. A snapshot swapped in at each
update would spare readers the lock but cost a copy of the graph's tables per keystroke.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import tree_sitter

from context.graph import SymbolGraph
from context.languages import grammar, language_for_path
from context.retag import retag
from context.scan import DEFAULT_MAX_FILE_BYTES, WorkspaceScanner
from context.tag_cache import TagCache
from context.tags import FileTags, extract_tags, plain_tags

ProgressCallback = Callable[[int, int], None]
# (graph version, mtime_ns, size) of what RepoIndex.read_text would return for a file.
SourceFingerprint = tuple[int | None, int | None, int | None]

# How many open documents keep their syntax tree for incremental parsing.
_MAX_OPEN_TREES = 32
_RECENT_EDITS = 16
# Files indexed per disk-cache transaction during a build.
_CACHE_BATCH = 256


@dataclass(frozen=True, slots=True)
class IndexStats:
    files: int
    parsed: int
    cached: int
    plain: int
    definitions: int
    references: int
    seconds: float
    cancelled: bool = False


@dataclass(slots=True)
class _OpenDocument:
    source: bytes
    tree: tree_sitter.Tree | None
    # False after an incremental parse that met syntax errors: see verify_document.
    exact: bool = True


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class RepoIndex:
    def __init__(
        self,
        roots: Sequence[str | os.PathLike[str]],
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        ignore: Sequence[str] = (),
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        include_secrets: bool = False,
    ) -> None:
        self.scanner = WorkspaceScanner(
            roots, ignore=ignore, max_file_bytes=max_file_bytes, include_secrets=include_secrets
        )
        self.max_file_bytes = max_file_bytes
        # Read it under ``reading()`` from any thread but the writers'.
        self.graph = SymbolGraph()
        self.repo_name = self.scanner.roots[0].name if self.scanner.roots else "repo"
        self._cache = TagCache(cache_dir) if cache_dir is not None else None
        self._parsers: dict[str, tree_sitter.Parser] = {}
        self._open: OrderedDict[str, _OpenDocument] = OrderedDict()
        self._hashes: dict[str, str] = {}
        self.recently_edited: list[str] = []
        self.saves = 0
        self._write_lock = threading.RLock()
        self._lock = threading.RLock()

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()

    @property
    def cache_error(self) -> str | None:
        """Why the disk cache was turned off, if it was (the index works without it)."""
        return self._cache.error if self._cache is not None else None

    @contextlib.contextmanager
    def reading(self) -> Iterator[SymbolGraph]:
        """The graph, unchanged by writers until the block ends (also ``recently_edited``)."""
        with self._lock:
            yield self.graph

    # -- helpers --------------------------------------------------------------------------

    def key(self, path: str | os.PathLike[str]) -> str:
        key = self.scanner.key_for(path)
        return key if key is not None else Path(path).as_posix()

    def _parser(self, language: str) -> tree_sitter.Parser:
        parser = self._parsers.get(language)
        if parser is None:
            parser = tree_sitter.Parser(grammar(language).language)
            self._parsers[language] = parser
        return parser

    def _tags_key(self, key: str, language: str | None, digest: str) -> str:
        version = grammar(language).version if language else "plain"
        return f"tags|{version}|{digest}"

    def _compute_tags(
        self, language: str | None, source: bytes
    ) -> tuple[FileTags, tree_sitter.Tree | None]:
        if language is None or len(source) > self.max_file_bytes:
            return plain_tags(source), None
        tree = self._parser(language).parse(source)
        return extract_tags(grammar(language), tree, source), tree

    def source_fingerprint(self, key: str) -> SourceFingerprint:
        """Changes whenever what read_text(key) returns may have: the file's graph version,
        and for a file read from disk its mtime and size (a change the editor never told)."""
        version = self.graph.file_versions.get(key)
        if key in self._open:
            return version, None, None
        try:
            stat = os.stat(self.scanner.path_for(key))
        except OSError:
            return version, None, -1
        return version, stat.st_mtime_ns, stat.st_size

    def read_text(self, key: str) -> str | None:
        """Current text of an indexed file: the open document's, else the file on disk."""
        with self._lock:
            document = self._open.get(key)
        if document is not None:
            return document.source.decode("utf-8", errors="replace")
        try:
            return self.scanner.path_for(key).read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return None

    # -- full build -----------------------------------------------------------------------

    def build(
        self,
        progress: ProgressCallback | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> IndexStats:
        """Scan and index the workspace; unchanged files come from the disk cache."""
        with self._write_lock:
            return self._build(progress, cancelled)

    def _build(
        self, progress: ProgressCallback | None, cancelled: Callable[[], bool] | None
    ) -> IndexStats:
        started = time.perf_counter()
        files = list(self.scanner.scan())
        parsed = cached = plain = 0
        seen: set[str] = set()
        # Cache writes go in transactions of a few hundred files: one commit per write cost
        # about a tenth of a cold build.
        batch = contextlib.ExitStack()
        try:
            for position, scanned in enumerate(files):
                if self._cache is not None and position % _CACHE_BATCH == 0:
                    batch.close()
                    batch.enter_context(self._cache.transaction())
                if cancelled is not None and cancelled():
                    return self._stats(started, parsed, cached, plain, cancelled=True)
                seen.add(scanned.key)
                if scanned.key in self._open:
                    continue  # the editor's text wins over the disk
                language = language_for_path(scanned.key)
                stat_key = f"stat|{scanned.key}|{scanned.size}|{scanned.mtime_ns}"
                digest = self._cache.get(stat_key) if self._cache is not None else None
                tags = None
                if digest is not None and self._cache is not None:
                    tags = self._cache.get(self._tags_key(scanned.key, language, str(digest)))
                if tags is None:
                    try:
                        source = scanned.path.read_bytes()
                    except OSError:
                        continue
                    digest = content_hash(source)
                    tags_key = self._tags_key(scanned.key, language, digest)
                    tags = self._cache.get(tags_key) if self._cache is not None else None
                    if tags is None:
                        tags, _tree = self._compute_tags(language, source)
                        parsed += 1
                        if self._cache is not None:
                            self._cache.set(tags_key, tags)
                    else:
                        cached += 1
                    if self._cache is not None:
                        self._cache.set(stat_key, digest)
                else:
                    cached += 1
                plain += tags.language is None
                with self._lock:
                    self._hashes[scanned.key] = str(digest)
                    self.graph.set_file(scanned.key, tags)
                if progress is not None:
                    progress(position + 1, len(files))
        finally:
            batch.close()
        with self._lock:
            for gone in [
                key for key in self.graph.files if key not in seen and key not in self._open
            ]:
                self.graph.remove_file(gone)
        return self._stats(started, parsed, cached, plain)

    def _stats(
        self, started: float, parsed: int, cached: int, plain: int, *, cancelled: bool = False
    ) -> IndexStats:
        with self._lock:
            files = self.graph.files.values()
            return IndexStats(
                files=len(files),
                parsed=parsed,
                cached=cached,
                plain=plain,
                definitions=sum(len(tags.definitions) for tags in files),
                references=sum(len(tags.references) for tags in files),
                seconds=time.perf_counter() - started,
                cancelled=cancelled,
            )

    # -- editor events --------------------------------------------------------------------

    def update_document(self, path: str | os.PathLike[str], text: str | bytes) -> FileTags:
        """Re-index one document from the editor's text.

        With a syntax tree kept from the previous version, the tree is edited with the one
        edit between the two texts and re-parsed incrementally, and only the statements around
        the change are re-tagged.
        """
        key = self.key(path)
        source = text.encode("utf-8", errors="surrogateescape") if isinstance(text, str) else text
        language = language_for_path(key)
        with self._write_lock:
            document = self._open.get(key)
            tree: tree_sitter.Tree | None = None
            exact = True
            if language is None or len(source) > self.max_file_bytes:
                tags = plain_tags(source)
            elif document is not None and document.tree is not None:
                tags, tree = retag(
                    self._parser(language),
                    grammar(language),
                    document.source,
                    document.tree,
                    self.graph.files.get(key),
                    source,
                )
                exact = not tree.root_node.has_error
            else:
                tags, tree = self._compute_tags(language, source)
            with self._lock:
                self._open[key] = _OpenDocument(source, tree, exact)
                self._open.move_to_end(key)
                # The graph now holds the buffer, not the disk file: closing it must re-read
                # the disk even when the file there did not change.
                self._hashes.pop(key, None)
                while len(self._open) > _MAX_OPEN_TREES:
                    oldest = next(iter(self._open))
                    self._open[oldest].tree = None
                    self._open.move_to_end(oldest)
                    if all(doc.tree is None for doc in self._open.values()):
                        break
                self.graph.set_file(key, tags)
                if not self.recently_edited or self.recently_edited[-1] != key:
                    if key in self.recently_edited:
                        self.recently_edited.remove(key)
                    self.recently_edited.append(key)
                    del self.recently_edited[:-_RECENT_EDITS]
            return tags

    def needs_verify(self, path: str | os.PathLike[str]) -> bool:
        document = self._open.get(self.key(path))
        return document is not None and not document.exact

    def verify_document(self, path: str | os.PathLike[str]) -> bool:
        """Parse and tag an open document from scratch if its last update was inexact.

        After error recovery an incremental parse can differ from a fresh one (seen on Go and
        Java), and tree-sitter's changed ranges can miss nodes that recovery moved next to the
        edit, so region re-tagging misses them (Rust, TypeScript). Doing this on every
        keystroke with a syntax error costs a full parse and tag; the caller runs it once the
        typing pauses. True when it re-parsed."""
        key = self.key(path)
        with self._write_lock:
            document = self._open.get(key)
            if document is None or document.exact:
                return False
            tags, tree = self._compute_tags(language_for_path(key), document.source)
            with self._lock:
                document.tree, document.exact = tree, True
                self.graph.set_file(key, tags)
            return True

    def save_document(self, path: str | os.PathLike[str]) -> None:
        """The editor saved ``path``: a re-rank trigger for assemblers."""
        key = self.key(path)
        with self._write_lock:
            self.verify_document(key)  # a save re-ranks: on exact tags
            self.saves += 1
            document = self._open.get(key)
            if document is not None and self._cache is not None:
                digest = content_hash(document.source)
                tags = self.graph.files.get(key)
                if tags is not None:
                    self._cache.set(self._tags_key(key, tags.language, digest), tags)

    def close_document(self, path: str | os.PathLike[str]) -> None:
        """The editor closed ``path``: the disk version is authoritative again."""
        key = self.key(path)
        with self._write_lock:
            with self._lock:
                self._open.pop(key, None)
            self.refresh_file(key)

    def refresh_file(self, path: str | os.PathLike[str]) -> None:
        """Re-read one file from disk (created or changed outside the editor)."""
        key = self.key(path)
        absolute = self.scanner.path_for(key)
        with self._write_lock:
            if key in self._open:
                return
            if not absolute.is_file() or not self.scanner.accepts(absolute):
                self.remove(key)
                return
            source = absolute.read_bytes()
            language = language_for_path(key)
            digest = content_hash(source)
            if self._hashes.get(key) == digest and key in self.graph.files:
                return
            tags_key = self._tags_key(key, language, digest)
            tags = self._cache.get(tags_key) if self._cache is not None else None
            if tags is None:
                tags, _tree = self._compute_tags(language, source)
                if self._cache is not None:
                    self._cache.set(tags_key, tags)
            with self._lock:
                self._hashes[key] = digest
                self.graph.set_file(key, tags)

    def remove(self, path: str | os.PathLike[str]) -> None:
        key = self.key(path)
        with self._write_lock, self._lock:
            self._open.pop(key, None)
            self._hashes.pop(key, None)
            self.graph.remove_file(key)
            if key in self.recently_edited:
                self.recently_edited.remove(key)

    def rename(self, old: str | os.PathLike[str], new: str | os.PathLike[str]) -> None:
        old_key, new_key = self.key(old), self.key(new)
        with self._write_lock:
            document = self._open.get(old_key)
            tags = self.graph.files.get(old_key)
            self.remove(old_key)
            if document is not None:
                self.update_document(new_key, document.source)
            elif tags is not None and language_for_path(old_key) == language_for_path(new_key):
                with self._lock:
                    self.graph.set_file(new_key, tags)
            else:
                self.refresh_file(new_key)
