"""Grammar registry: file extension -> tree-sitter language plus its tag queries.

Tag queries are each grammar wheel's bundled ``queries/tags.scm`` (TypeScript's builds on
JavaScript's, as upstream intends) plus small queries of our own for imports and for the
references the bundled files lack (C and C++ ship definitions only).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import tree_sitter


@dataclass(frozen=True, slots=True)
class LanguageSpec:
    name: str
    module: str
    # Attribute of the grammar module returning the language pointer.
    entry: str
    # Grammar modules whose tags.scm is used, in order.
    tag_modules: tuple[str, ...]
    extra_query: str


_PYTHON_EXTRA = """
(import_statement name: (dotted_name) @import)
(import_statement name: (aliased_import name: (dotted_name) @import))
(import_from_statement module_name: (_) @import)
(import_from_statement name: (dotted_name (identifier) @name) @reference.import)
(import_from_statement name: (aliased_import name: (dotted_name (identifier) @name)) @reference.import)
(class_definition superclasses: (argument_list (identifier) @name) @reference.class)
(class_definition superclasses: (argument_list (attribute attribute: (identifier) @name)) @reference.class)
(decorator (identifier) @name) @reference.call
"""

_JS_EXTRA = """
(import_statement source: (string) @import)
(import_specifier name: (identifier) @name) @reference.import
(call_expression function: (identifier) @_require arguments: (arguments (string) @import)
  (#eq? @_require "require"))
"""

_C_EXTRA = """
(preproc_include path: (_) @import)
(call_expression function: (identifier) @name) @reference.call
(call_expression function: (field_expression field: (field_identifier) @name)) @reference.call
(type_identifier) @name @reference.type
"""

_CPP_EXTRA = (
    _C_EXTRA
    + """
(call_expression function: (qualified_identifier name: (identifier) @name)) @reference.call
"""
)

_GO_EXTRA = """
(import_spec path: (interpreted_string_literal) @import)
(type_identifier) @name @reference.type
"""

_RUST_EXTRA = """
(use_declaration argument: (_) @import)
(type_identifier) @name @reference.type
"""

_JAVA_EXTRA = """
(import_declaration (scoped_identifier) @import)
(type_identifier) @name @reference.type
"""

_SPECS = (
    LanguageSpec(
        "python", "tree_sitter_python", "language", ("tree_sitter_python",), _PYTHON_EXTRA
    ),
    LanguageSpec(
        "javascript", "tree_sitter_javascript", "language", ("tree_sitter_javascript",), _JS_EXTRA
    ),
    LanguageSpec(
        "typescript",
        "tree_sitter_typescript",
        "language_typescript",
        ("tree_sitter_javascript", "tree_sitter_typescript"),
        _JS_EXTRA,
    ),
    LanguageSpec(
        "tsx",
        "tree_sitter_typescript",
        "language_tsx",
        ("tree_sitter_javascript", "tree_sitter_typescript"),
        _JS_EXTRA,
    ),
    LanguageSpec("go", "tree_sitter_go", "language", ("tree_sitter_go",), _GO_EXTRA),
    LanguageSpec("rust", "tree_sitter_rust", "language", ("tree_sitter_rust",), _RUST_EXTRA),
    LanguageSpec("java", "tree_sitter_java", "language", ("tree_sitter_java",), _JAVA_EXTRA),
    LanguageSpec("c", "tree_sitter_c", "language", ("tree_sitter_c",), _C_EXTRA),
    LanguageSpec("cpp", "tree_sitter_cpp", "language", ("tree_sitter_cpp",), _CPP_EXTRA),
)

_SPEC_BY_NAME = {spec.name: spec for spec in _SPECS}

EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hh": "cpp",
    ".hpp": "cpp",
    ".hxx": "cpp",
}


def language_for_path(path: str) -> str | None:
    """Language name for a file path, or None for plain text."""
    return EXTENSIONS.get(Path(path).suffix.lower())


@dataclass(frozen=True, slots=True)
class Grammar:
    name: str
    language: tree_sitter.Language
    tags_query: tree_sitter.Query
    # Changes whenever a grammar wheel or our queries change: part of the tag cache key.
    version: str


def _distribution_version(module: str) -> str:
    try:
        return importlib.metadata.version(module.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _bundled_tags(module: str) -> str:
    package_dir = Path(importlib.import_module(module).__file__ or "").parent
    tags_file = package_dir / "queries" / "tags.scm"
    return tags_file.read_text(encoding="utf-8") if tags_file.is_file() else ""


@cache
def grammar(name: str) -> Grammar:
    """Load (once) the grammar and compiled tag query for a language name."""
    spec = _SPEC_BY_NAME[name]
    language = tree_sitter.Language(getattr(importlib.import_module(spec.module), spec.entry)())
    source = "\n".join(_bundled_tags(module) for module in spec.tag_modules) + spec.extra_query
    versions = ",".join(
        f"{module}={_distribution_version(module)}"
        for module in dict.fromkeys((spec.module, *spec.tag_modules))
    )
    version = f"{tree_sitter_version()};{versions};q{hash_text(source)}"
    return Grammar(name, language, tree_sitter.Query(language, source), version)


def tree_sitter_version() -> str:
    return _distribution_version("tree_sitter")


def hash_text(text: str) -> str:
    import hashlib

    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def supported_languages() -> tuple[str, ...]:
    return tuple(spec.name for spec in _SPECS)
