"""Per-file tags: definitions, references and imports extracted with tree-sitter queries."""

from __future__ import annotations

from dataclasses import dataclass, field

import tree_sitter

from context.languages import Grammar

_SIGNATURE_MAX_CHARS = 200


@dataclass(frozen=True, slots=True)
class Definition:
    name: str
    kind: str  # "function", "class", "method", ... (the tags.scm suffix)
    start_line: int  # 0-based, inclusive
    end_line: int  # 0-based, inclusive
    start_byte: int
    end_byte: int
    signature: str  # the definition's first line, stripped of trailing whitespace

    # Tags are pickled into the disk cache by the thousand; the generic dataclass state
    # (a dict built from fields() per object) made pickling cost as much as parsing.
    def __reduce__(self) -> tuple[type[Definition], tuple[str, str, int, int, int, int, str]]:
        return (
            Definition,
            (
                self.name,
                self.kind,
                self.start_line,
                self.end_line,
                self.start_byte,
                self.end_byte,
                self.signature,
            ),
        )


@dataclass(frozen=True, slots=True)
class Reference:
    name: str
    kind: str  # "call", "class", "type", "import", ...
    line: int
    col: int

    def __reduce__(self) -> tuple[type[Reference], tuple[str, str, int, int]]:
        return (Reference, (self.name, self.kind, self.line, self.col))


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # as written, quotes stripped
    line: int

    def __reduce__(self) -> tuple[type[Import], tuple[str, int]]:
        return (Import, (self.module, self.line))


@dataclass(frozen=True, slots=True)
class FileTags:
    language: str | None
    definitions: tuple[Definition, ...] = ()
    references: tuple[Reference, ...] = ()
    imports: tuple[Import, ...] = ()
    line_count: int = 0
    defined_names: frozenset[str] = field(default_factory=frozenset)
    referenced_names: frozenset[str] = field(default_factory=frozenset)


def plain_tags(source: bytes) -> FileTags:
    return FileTags(language=None, line_count=source.count(b"\n") + 1)


def _text(node: tree_sitter.Node) -> str:
    raw = node.text or b""
    return raw.decode("utf-8", errors="replace")


def _signature(source: bytes, node: tree_sitter.Node) -> str:
    start = node.start_byte - node.start_point[1]
    end = source.find(b"\n", node.start_byte)
    if end < 0:
        end = len(source)
    line = source[start:end].decode("utf-8", errors="replace").rstrip()
    return line[:_SIGNATURE_MAX_CHARS]


def extract_tags(
    grammar: Grammar,
    tree: tree_sitter.Tree,
    source: bytes,
    *,
    byte_range: tuple[int, int] | None = None,
) -> FileTags:
    """Run the grammar's tag query over a parsed tree (or the part in ``byte_range``)."""
    definitions: dict[tuple[str, int], Definition] = {}
    references: dict[tuple[str, int, int], Reference] = {}
    imports: dict[tuple[str, int], Import] = {}
    cursor = tree_sitter.QueryCursor(grammar.tags_query)
    if byte_range is not None:
        cursor.set_byte_range(*byte_range)
    for _pattern, captures in cursor.matches(tree.root_node):
        import_nodes = captures.get("import")
        if import_nodes:
            for node in import_nodes:
                module = _text(node).strip("\"'<>`")
                imports.setdefault(
                    (module, node.start_point[0]), Import(module, node.start_point[0])
                )
            continue
        name_nodes = captures.get("name")
        if not name_nodes:
            continue
        name_node = name_nodes[0]
        for capture_name, nodes in captures.items():
            if capture_name.startswith("definition."):
                node = nodes[0]
                name = _text(name_node)
                key = (name, node.start_byte)
                if key not in definitions:
                    definitions[key] = Definition(
                        name=name,
                        kind=capture_name.removeprefix("definition."),
                        start_line=node.start_point[0],
                        end_line=node.end_point[0],
                        start_byte=node.start_byte,
                        end_byte=node.end_byte,
                        signature=_signature(source, node),
                    )
                break
            if capture_name.startswith("reference."):
                line, col = name_node.start_point
                name = _text(name_node)
                references.setdefault(
                    (name, line, col),
                    Reference(name, capture_name.removeprefix("reference."), line, col),
                )
                break
    ordered_definitions = tuple(sorted(definitions.values(), key=lambda d: (d.start_byte, d.name)))
    ordered_references = tuple(sorted(references.values(), key=lambda r: (r.line, r.col, r.name)))
    return FileTags(
        language=grammar.name,
        definitions=ordered_definitions,
        references=ordered_references,
        imports=tuple(sorted(imports.values(), key=lambda i: (i.line, i.module))),
        line_count=source.count(b"\n") + 1,
        defined_names=frozenset(d.name for d in ordered_definitions),
        referenced_names=frozenset(r.name for r in ordered_references),
    )
