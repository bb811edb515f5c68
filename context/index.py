"""RepoIndex: scans the workspace, keeps per-file tags in a SymbolGraph and a disk cache."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import diskcache
import tree_sitter

from context.graph import SymbolGraph
from context.languages import Grammar, grammar, language_for_path
from context.scan import DEFAULT_MAX_FILE_BYTES, WorkspaceScanner
from context.tags import Definition, FileTags, Reference, extract_tags, plain_tags

ProgressCallback = Callable[[int, int], None]

# Block-like nodes: their children are whole statements, the unit re-tagged after an edit.
_BLOCK_TYPES = frozenset(
    {
        "module",
        "program",
        "source_file",
        "translation_unit",
        "block",
        "class_body",
        "declaration_list",
        "statement_block",
        "compound_statement",
        "field_declaration_list",
        "interface_body",
        "enum_body",
        "object_type",
    }
)
# How many open documents keep their syntax tree for incremental parsing.
_MAX_OPEN_TREES = 32
_RECENT_EDITS = 16
# Files indexed per disk-cache transaction during a build.
_CACHE_BATCH = 256
_DIFF_STEPS = (4096, 512, 64, 8, 1)


@dataclass(frozen=True, slots=True)
class TextEdit:
    """One edit in tree-sitter's terms; points are (row, byte column)."""

    start_byte: int
    old_end_byte: int
    new_end_byte: int
    start_point: tuple[int, int]
    old_end_point: tuple[int, int]
    new_end_point: tuple[int, int]


EditLike = TextEdit | tuple[int, int, int, tuple[int, int], tuple[int, int], tuple[int, int]]


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


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _point_after(
    source: bytes, start: int, end: int, start_point: tuple[int, int]
) -> tuple[int, int]:
    chunk = source[start:end]
    newlines = chunk.count(b"\n")
    if newlines == 0:
        return (start_point[0], start_point[1] + len(chunk))
    return (start_point[0] + newlines, len(chunk) - chunk.rfind(b"\n") - 1)


def diff_edit(old: bytes, new: bytes) -> TextEdit | None:
    """The single edit turning ``old`` into ``new`` (common prefix and suffix kept)."""
    if old == new:
        return None
    limit = min(len(old), len(new))
    prefix = 0
    # Compare in ever smaller chunks: documents are long and edits small, and a byte-by-byte
    # loop over the last chunk alone cost a millisecond per keystroke.
    for step in _DIFF_STEPS:
        while prefix + step <= limit and old[prefix : prefix + step] == new[prefix : prefix + step]:
            prefix += step
    suffix = 0
    limit -= prefix
    for step in _DIFF_STEPS:
        while (
            suffix + step <= limit
            and old[len(old) - suffix - step : len(old) - suffix]
            == new[len(new) - suffix - step : len(new) - suffix]
        ):
            suffix += step
    start_point = _point_after(old, 0, prefix, (0, 0))
    old_end = len(old) - suffix
    new_end = len(new) - suffix
    return TextEdit(
        start_byte=prefix,
        old_end_byte=old_end,
        new_end_byte=new_end,
        start_point=start_point,
        old_end_point=_point_after(old, prefix, old_end, start_point),
        new_end_point=_point_after(new, prefix, new_end, start_point),
    )


def _statement_region(
    root: tree_sitter.Node, start: int, end: int
) -> tuple[tree_sitter.Node, tree_sitter.Node, tree_sitter.Node] | None:
    """The statements to re-tag for a change in bytes [start, end] of the new tree.

    Returns the first and last statement (children of one block node) and that block, or None
    when only the whole file will do. A change inside one statement gives that statement. A
    change in a block's own text (whitespace or a new line between statements, or one spanning
    several) gives the block's children around it, not the whole enclosing definition: climbing
    from the block re-tagged a whole class on every typed space or newline.
    """
    node: tree_sitter.Node | None = root.descendant_for_byte_range(start, end)
    while node is not None and node.type not in _BLOCK_TYPES:
        parent = node.parent
        if parent is None:
            return None
        if parent.type in _BLOCK_TYPES:
            return _unless_whole_file(root, node, node, parent)
        node = parent
    if node is None or node.child_count == 0:
        return None
    children = node.children
    # Statements from the last one starting at or before the change to the first one ending at
    # or after it; a change before the first or after the last statement falls back.
    first = next((child for child in reversed(children) if child.start_byte <= start), None)
    last = next((child for child in children if child.end_byte >= end), None)
    if first is None or last is None or first.start_byte > last.start_byte:
        return None
    return _unless_whole_file(root, first, last, node)


def _unless_whole_file(
    root: tree_sitter.Node, first: tree_sitter.Node, last: tree_sitter.Node, block: tree_sitter.Node
) -> tuple[tree_sitter.Node, tree_sitter.Node, tree_sitter.Node] | None:
    # Re-tagging a region that is the whole file costs a full re-tag and then some.
    if (
        block == root
        and first.start_byte <= root.children[0].start_byte
        and last.end_byte >= root.children[-1].end_byte
    ):
        return None
    return first, last, block


def _as_edit(edit: EditLike) -> TextEdit:
    return edit if isinstance(edit, TextEdit) else TextEdit(*edit)


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
        self.graph = SymbolGraph()
        self.repo_name = self.scanner.roots[0].name if self.scanner.roots else "repo"
        self._cache = diskcache.Cache(str(cache_dir)) if cache_dir is not None else None
        self._parsers: dict[str, tree_sitter.Parser] = {}
        self._open: OrderedDict[str, _OpenDocument] = OrderedDict()
        self._hashes: dict[str, str] = {}
        self.recently_edited: list[str] = []
        self.saves = 0
        self._lock = threading.RLock()

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()

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

    def read_text(self, key: str) -> str | None:
        """Current text of an indexed file: the open document's, else the file on disk."""
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
                    batch.enter_context(self._cache.transact())
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
        return IndexStats(
            files=len(self.graph.files),
            parsed=parsed,
            cached=cached,
            plain=plain,
            definitions=sum(len(tags.definitions) for tags in self.graph.files.values()),
            references=sum(len(tags.references) for tags in self.graph.files.values()),
            seconds=time.perf_counter() - started,
            cancelled=cancelled,
        )

    # -- editor events --------------------------------------------------------------------

    def update_document(
        self,
        path: str | os.PathLike[str],
        text: str | bytes,
        edits: Sequence[EditLike] | None = None,
    ) -> FileTags:
        """Re-index one document from the editor's text.

        With a syntax tree kept from the previous version, the tree is edited (from ``edits``
        or a prefix/suffix diff) and re-parsed incrementally, and only the statements around
        the change are re-tagged.
        """
        key = self.key(path)
        source = text.encode("utf-8", errors="surrogateescape") if isinstance(text, str) else text
        language = language_for_path(key)
        with self._lock:
            document = self._open.get(key)
            tags: FileTags | None = None
            tree: tree_sitter.Tree | None = None
            if language is not None and len(source) <= self.max_file_bytes:
                if document is not None and document.tree is not None:
                    tags, tree = self._reparse(language, key, document, source, edits)
                else:
                    tags, tree = self._compute_tags(language, source)
            else:
                tags = plain_tags(source)
            self._open[key] = _OpenDocument(source, tree)
            self._open.move_to_end(key)
            # The graph now holds the buffer, not the disk file: closing it must re-read the
            # disk even when the file there did not change.
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

    def _reparse(
        self,
        language: str,
        key: str,
        document: _OpenDocument,
        source: bytes,
        edits: Sequence[EditLike] | None,
    ) -> tuple[FileTags, tree_sitter.Tree]:
        old_tree = document.tree
        assert old_tree is not None
        if edits is None:
            single = diff_edit(document.source, source)
            edit_list = [single] if single is not None else []
        else:
            edit_list = [_as_edit(edit) for edit in edits]
        if not edit_list:
            return self.graph.files[key], old_tree
        for edit in edit_list:
            old_tree.edit(
                start_byte=edit.start_byte,
                old_end_byte=edit.old_end_byte,
                new_end_byte=edit.new_end_byte,
                start_point=edit.start_point,
                old_end_point=edit.old_end_point,
                new_end_point=edit.new_end_point,
            )
        new_tree = self._parser(language).parse(source, old_tree)
        old_tags = self.graph.files.get(key)
        if len(edit_list) != 1 or old_tags is None or old_tags.language != language:
            return extract_tags(grammar(language), new_tree, source), new_tree
        return self._retag_region(
            grammar(language), old_tags, new_tree, old_tree, source, edit_list[0]
        ), new_tree

    def _retag_region(
        self,
        lang: Grammar,
        old_tags: FileTags,
        new_tree: tree_sitter.Tree,
        old_tree: tree_sitter.Tree,
        source: bytes,
        edit: TextEdit,
    ) -> FileTags:
        """Re-tag only the statement(s) enclosing the edit, shifting the tags after it."""
        start, end = edit.start_byte, edit.new_end_byte
        for changed in old_tree.changed_ranges(new_tree):
            start = min(start, changed.start_byte)
            end = max(end, changed.end_byte)
        region = _statement_region(new_tree.root_node, start, end)
        if region is None:
            return extract_tags(lang, new_tree, source)
        first, last, container = region
        region_start, region_end = first.start_byte, last.end_byte
        delta_bytes = edit.new_end_byte - edit.old_end_byte
        old_region_end = region_end - delta_bytes
        region_start_point = first.start_point
        region_end_point = last.end_point
        region_start_line = region_start_point[0]
        delta_lines = edit.new_end_point[0] - edit.old_end_point[0]
        new_end_line, new_end_col = region_end_point
        # Columns after the edit on its last line moved; so did the region's end if it is there.
        delta_cols = (
            edit.new_end_point[1] - edit.old_end_point[1]
            if new_end_line == edit.new_end_point[0]
            else 0
        )
        old_region_end_point = (new_end_line - delta_lines, new_end_col - delta_cols)
        region_tags = extract_tags(lang, new_tree, source, byte_range=(region_start, region_end))

        old_end_line = old_region_end_point[0]
        if any(region_start_line <= item.line <= old_end_line for item in old_tags.imports):
            return extract_tags(lang, new_tree, source)
        ancestors: set[tuple[int, int]] = set()
        ancestor: tree_sitter.Node | None = container
        while ancestor is not None:
            ancestors.add((ancestor.start_byte, ancestor.end_byte))
            ancestor = ancestor.parent

        definitions: list[Definition] = []
        for definition in old_tags.definitions:
            if definition.end_byte <= region_start and definition.start_line < region_start_line:
                definitions.append(definition)
            elif definition.start_byte >= old_region_end and definition.start_line > old_end_line:
                # Built directly: dataclasses.replace costs a millisecond over a large file.
                definitions.append(
                    Definition(
                        definition.name,
                        definition.kind,
                        definition.start_line + delta_lines,
                        definition.end_line + delta_lines,
                        definition.start_byte + delta_bytes,
                        definition.end_byte + delta_bytes,
                        definition.signature,
                    )
                )
            elif (
                definition.start_byte < region_start
                and definition.end_byte >= old_region_end
                and definition.start_line < region_start_line
                and (definition.start_byte, definition.end_byte + delta_bytes) in ancestors
            ):
                # An enclosing definition (a method's class): only its end moved.
                definitions.append(
                    replace(
                        definition,
                        end_byte=definition.end_byte + delta_bytes,
                        end_line=definition.end_line + delta_lines,
                    )
                )
            elif not (
                region_start <= definition.start_byte and definition.end_byte <= old_region_end
            ):
                # It straddles the region, or shares a line with it: no safe shortcut.
                return extract_tags(lang, new_tree, source)
        definitions.extend(
            d
            for d in region_tags.definitions
            if d.start_byte >= region_start and d.end_byte <= region_end
        )
        references: list[Reference] = []
        for reference in old_tags.references:
            position = (reference.line, reference.col)
            if position < region_start_point:
                references.append(reference)
            elif position >= old_region_end_point:
                shift_cols = delta_cols if reference.line == old_end_line else 0
                references.append(
                    reference
                    if delta_lines == 0 and shift_cols == 0
                    else Reference(
                        reference.name,
                        reference.kind,
                        reference.line + delta_lines,
                        reference.col + shift_cols,
                    )
                )
        references.extend(
            r
            for r in region_tags.references
            if region_start_point <= (r.line, r.col) < region_end_point
        )
        imports = [
            item if item.line < region_start_line else replace(item, line=item.line + delta_lines)
            for item in old_tags.imports
        ]
        imports.extend(region_tags.imports)
        ordered_definitions = tuple(sorted(definitions, key=lambda d: (d.start_byte, d.name)))
        ordered_references = tuple(sorted(references, key=lambda r: (r.line, r.col, r.name)))
        return FileTags(
            language=lang.name,
            definitions=ordered_definitions,
            references=ordered_references,
            imports=tuple(sorted(set(imports), key=lambda i: (i.line, i.module))),
            line_count=source.count(b"\n") + 1,
            defined_names=frozenset(d.name for d in ordered_definitions),
            referenced_names=frozenset(r.name for r in ordered_references),
        )

    def save_document(self, path: str | os.PathLike[str]) -> None:
        """The editor saved ``path``: a re-rank trigger for assemblers."""
        self.saves += 1
        key = self.key(path)
        document = self._open.get(key)
        if document is not None and self._cache is not None:
            digest = content_hash(document.source)
            tags = self.graph.files.get(key)
            if tags is not None:
                self._cache.set(self._tags_key(key, tags.language, digest), tags)

    def close_document(self, path: str | os.PathLike[str]) -> None:
        """The editor closed ``path``: the disk version is authoritative again."""
        key = self.key(path)
        with self._lock:
            self._open.pop(key, None)
        self.refresh_file(key)

    def refresh_file(self, path: str | os.PathLike[str]) -> None:
        """Re-read one file from disk (created or changed outside the editor)."""
        key = self.key(path)
        absolute = self.scanner.path_for(key)
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
        with self._lock:
            self._open.pop(key, None)
            self._hashes.pop(key, None)
            self.graph.remove_file(key)
            if key in self.recently_edited:
                self.recently_edited.remove(key)

    def rename(self, old: str | os.PathLike[str], new: str | os.PathLike[str]) -> None:
        old_key, new_key = self.key(old), self.key(new)
        with self._lock:
            document = self._open.pop(old_key, None)
            tags = self.graph.files.get(old_key)
            self.remove(old_key)
            if document is not None:
                self.update_document(new_key, document.source)
            elif tags is not None and language_for_path(old_key) == language_for_path(new_key):
                self.graph.set_file(new_key, tags)
            else:
                self.refresh_file(new_key)
