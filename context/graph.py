"""Symbol graph over the indexed files: definitions, references, imports and dependents."""

from __future__ import annotations

import math
import posixpath
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from context.languages import EXTENSIONS
from context.tags import Definition, FileTags, Reference

# Names defined in more files than this carry no signal about which file is meant.
_MAX_DEFINING_FILES = 40


@dataclass(frozen=True, slots=True)
class SymbolLocation:
    path: str
    definition: Definition


@dataclass(frozen=True, slots=True)
class ReferenceLocation:
    path: str
    reference: Reference


@dataclass(frozen=True, slots=True, eq=False)
class FileEdges:
    """The file graph as parallel arrays (indices into ``paths``), for ranking."""

    paths: tuple[str, ...]
    sources: np.ndarray
    targets: np.ndarray
    weights: np.ndarray


def _module_candidates(module: str, importer: str) -> list[str]:
    """Extension-less paths (or path suffixes) that an import string may name, best first."""
    cleaned = module.strip().strip("\"'<>")
    stem, extension = posixpath.splitext(cleaned)
    if extension in EXTENSIONS:
        cleaned = stem
    if cleaned.startswith("."):
        if "/" in cleaned:  # JS/TS relative specifier
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(importer), cleaned))
            return [joined, joined + "/index"]
        # Python relative import: one leading dot = the importer's package.
        level = len(cleaned) - len(cleaned.lstrip("."))
        base = posixpath.dirname(importer)
        for _ in range(level - 1):
            base = posixpath.dirname(base)
        rest = cleaned.lstrip(".").replace(".", "/")
        joined = posixpath.join(base, rest) if rest else base
        return [joined, joined + "/__init__"]
    if "/" not in cleaned:
        cleaned = cleaned.replace("::", "/").replace(".", "/")
    cleaned = cleaned.removeprefix("crate/").removeprefix("super/")
    candidates = [cleaned, cleaned + "/__init__", cleaned + "/index", cleaned + "/mod"]
    # The last component may name an item inside the module (Rust ``use``, Java static).
    if "/" in cleaned:
        candidates.append(posixpath.dirname(cleaned))
    return candidates


def _same_edges(old: FileTags, new: FileTags) -> bool:
    """Whether ``new`` links its file to the same names and modules as ``old``."""
    return (
        old.defined_names == new.defined_names
        and old.referenced_names == new.referenced_names
        and {item.module for item in old.imports} == {item.module for item in new.imports}
    )


class SymbolGraph:
    def __init__(self) -> None:
        self.files: dict[str, FileTags] = {}
        self._defining_files: dict[str, set[str]] = defaultdict(set)
        self._referencing_files: dict[str, set[str]] = defaultdict(set)
        # Extension-less path -> keys, and last path component -> extension-less paths.
        self._by_stem_path: dict[str, set[str]] = defaultdict(set)
        self._by_basename: dict[str, set[str]] = defaultdict(set)
        # Folder -> keys: Go imports name a package folder; last folder component -> folders,
        # so that matching a folder suffix does not scan every folder.
        self._by_folder: dict[str, set[str]] = defaultdict(set)
        self._folders_by_name: dict[str, set[str]] = defaultdict(set)
        self._imports_cache: dict[str, frozenset[str]] = {}
        self._edges_cache: FileEdges | None = None
        self.version = 0
        # The graph version at each file's last change: whoever holds what it read of a
        # file can tell whether the file changed since (context.assemble).
        self.file_versions: dict[str, int] = {}

    # -- mutation -------------------------------------------------------------------------

    def set_file(self, path: str, tags: FileTags) -> None:
        old = self.files.get(path)
        if old is not None and _same_edges(old, tags):
            # Most keystrokes: the file graph stays, and with it the ranking's arrays, which
            # took longer to rebuild on a large repository than a whole assembly.
            self.files[path] = tags
            self.version += 1
            self.file_versions[path] = self.version
            return
        if old is not None:
            self._unlink(path, old, keep_path=True)
        else:
            stem = posixpath.splitext(path)[0]
            self._by_stem_path[stem].add(path)
            self._by_basename[posixpath.basename(stem)].add(stem)
            folder = posixpath.dirname(path)
            self._folders_by_name[posixpath.basename(folder)].add(folder)
            self._by_folder[folder].add(path)
            self._imports_cache.clear()
        self.files[path] = tags
        for name in tags.defined_names:
            self._defining_files[name].add(path)
        for name in tags.referenced_names:
            self._referencing_files[name].add(path)
        self._imports_cache.pop(path, None)
        self._edges_cache = None
        self.version += 1
        self.file_versions[path] = self.version

    def remove_file(self, path: str) -> None:
        old = self.files.pop(path, None)
        if old is not None:
            self._unlink(path, old, keep_path=False)
            self._edges_cache = None
            self.version += 1
        self.file_versions.pop(path, None)

    def _unlink(self, path: str, tags: FileTags, *, keep_path: bool) -> None:
        for name in tags.defined_names:
            self._discard(self._defining_files, name, path)
        for name in tags.referenced_names:
            self._discard(self._referencing_files, name, path)
        if not keep_path:
            stem = posixpath.splitext(path)[0]
            self._discard(self._by_stem_path, stem, path)
            if stem not in self._by_stem_path:
                self._discard(self._by_basename, posixpath.basename(stem), stem)
            folder = posixpath.dirname(path)
            self._discard(self._by_folder, folder, path)
            if folder not in self._by_folder:
                self._discard(self._folders_by_name, posixpath.basename(folder), folder)
            self._imports_cache.clear()

    @staticmethod
    def _discard(table: dict[str, set[str]], name: str, path: str) -> None:
        members = table.get(name)
        if members is not None:
            members.discard(path)
            if not members:
                del table[name]

    # -- queries --------------------------------------------------------------------------

    def definitions(self, name: str) -> list[SymbolLocation]:
        return [
            SymbolLocation(path, definition)
            for path in sorted(self._defining_files.get(name, ()))
            for definition in self.files[path].definitions
            if definition.name == name
        ]

    def references(self, name: str) -> list[ReferenceLocation]:
        return [
            ReferenceLocation(path, reference)
            for path in sorted(self._referencing_files.get(name, ()))
            for reference in self.files[path].references
            if reference.name == name
        ]

    def defining_files(self, name: str) -> frozenset[str]:
        return frozenset(self._defining_files.get(name, ()))

    def imports(self, path: str) -> frozenset[str]:
        """Indexed files that ``path`` imports (resolved heuristically by path suffix)."""
        cached = self._imports_cache.get(path)
        if cached is not None:
            return cached
        tags = self.files.get(path)
        resolved: set[str] = set()
        for item in tags.imports if tags else ():
            resolved.update(self._resolve(item.module, path))
        resolved.discard(path)
        result = frozenset(resolved)
        self._imports_cache[path] = result
        return result

    def _resolve(self, module: str, importer: str) -> set[str]:
        found = self._resolve_stems(module, importer)
        # ``#include "vec.h"`` names the header, not vec.c beside it.
        extension = posixpath.splitext(module.strip("\"'<>"))[1]
        exact = {path for path in found if path.endswith(extension)} if extension else found
        return exact or found

    def _resolve_stems(self, module: str, importer: str) -> set[str]:
        candidates = [c for c in _module_candidates(module, importer) if c and c != "."]
        for candidate in candidates:
            exact = self._by_stem_path.get(candidate)
            if exact:
                return set(exact)
            found: set[str] = set()
            for stem in self._by_basename.get(posixpath.basename(candidate), ()):
                if stem.endswith("/" + candidate):
                    found.update(self._by_stem_path[stem])
            if found:
                return found
        # A package folder (Go), matched on at least its last two path components.
        parts = candidates[0].split("/") if candidates else []
        for start in range(max(len(parts) - 1, 0)):
            suffix = "/".join(parts[start:])
            members = self._by_folder.get(suffix)
            if members:
                return set(members)
            matched = {
                key
                for folder in self._folders_by_name.get(posixpath.basename(suffix), ())
                if folder.endswith("/" + suffix)
                for key in self._by_folder[folder]
            }
            if matched:
                return matched
        return set()

    def dependents(self, path: str) -> list[str]:
        """Files that reference a symbol defined in ``path`` or import it."""
        tags = self.files.get(path)
        found: set[str] = set()
        if tags is not None:
            for name in tags.defined_names:
                found.update(self._referencing_files.get(name, ()))
        for other in self.files:
            if path in self.imports(other):
                found.add(other)
        found.discard(path)
        return sorted(found)

    def file_edges(self) -> FileEdges:
        """Weighted file -> file edges: references to definitions, and imports."""
        if self._edges_cache is not None:
            return self._edges_cache
        paths = tuple(sorted(self.files))
        index = {path: position for position, path in enumerate(paths)}
        sources: list[int] = []
        targets: list[int] = []
        weights: list[float] = []
        for name, referencing in self._referencing_files.items():
            defining = self._defining_files.get(name)
            if not defining or len(defining) > _MAX_DEFINING_FILES:
                continue
            share = 1.0 / math.sqrt(len(defining))
            defined_in = [index[path] for path in defining]
            for source_path in referencing:
                source = index[source_path]
                for target in defined_in:
                    if target != source:
                        sources.append(source)
                        targets.append(target)
                        weights.append(share)
        for source_path in paths:
            source = index[source_path]
            for target_path in self.imports(source_path):
                sources.append(source)
                targets.append(index[target_path])
                weights.append(1.0)
        # One edge per (source, target), in that order, its weights summed: with numpy, as
        # sorting a dict of 10^5 pairs in Python took longer than a whole assembly.
        pairs = np.asarray(sources, dtype=np.int64) * max(len(paths), 1) + np.asarray(
            targets, dtype=np.int64
        )
        unique, inverse = np.unique(pairs, return_inverse=True)
        summed = np.bincount(inverse, weights=np.asarray(weights), minlength=len(unique))
        self._edges_cache = FileEdges(
            paths=paths,
            sources=unique // max(len(paths), 1),
            targets=unique % max(len(paths), 1),
            weights=summed,
        )
        return self._edges_cache
