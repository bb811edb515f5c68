"""Incremental re-tagging: from a document's previous text, tree and tags to its new tags.

One edit (the common prefix and suffix of the two texts) is applied to the kept syntax tree, the
tree is re-parsed incrementally, and only the statements around the change are re-tagged; the
tags after it are shifted. Whenever no safe shortcut exists the whole file is re-tagged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import tree_sitter

from context.languages import Grammar
from context.tags import Definition, FileTags, Reference, extract_tags
from context.textdiff import common_affixes

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


@dataclass(frozen=True, slots=True)
class TextEdit:
    """One edit in tree-sitter's terms; points are (row, byte column)."""

    start_byte: int
    old_end_byte: int
    new_end_byte: int
    start_point: tuple[int, int]
    old_end_point: tuple[int, int]
    new_end_point: tuple[int, int]


def _point_after(
    source: bytes, start: int, end: int, start_point: tuple[int, int]
) -> tuple[int, int]:
    chunk = source[start:end]
    newlines = chunk.count(b"\n")
    if newlines == 0:
        return (start_point[0], start_point[1] + len(chunk))
    return (start_point[0] + newlines, len(chunk) - chunk.rfind(b"\n") - 1)


def edit_between(old: bytes, new: bytes) -> TextEdit | None:
    """The single edit turning ``old`` into ``new`` (common prefix and suffix kept)."""
    if old == new:
        return None
    prefix, suffix = common_affixes(old, new)
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


def retag(
    parser: tree_sitter.Parser,
    lang: Grammar,
    old_source: bytes,
    old_tree: tree_sitter.Tree,
    old_tags: FileTags | None,
    source: bytes,
) -> tuple[FileTags, tree_sitter.Tree]:
    """Tags and tree of ``source``, from the previous version's (``old_tree`` is edited in
    place and must not be used for anything else afterwards)."""
    edit = edit_between(old_source, source)
    if edit is None and old_tags is not None:
        return old_tags, old_tree
    if edit is not None:
        old_tree.edit(
            start_byte=edit.start_byte,
            old_end_byte=edit.old_end_byte,
            new_end_byte=edit.new_end_byte,
            start_point=edit.start_point,
            old_end_point=edit.old_end_point,
            new_end_point=edit.new_end_point,
        )
    new_tree = parser.parse(source, old_tree)
    if edit is None or old_tags is None or old_tags.language != lang.name:
        return extract_tags(lang, new_tree, source), new_tree
    return _retag_region(lang, old_tags, new_tree, old_tree, source, edit), new_tree


def statement_region(
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


def _retag_region(
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
    region = statement_region(new_tree.root_node, start, end)
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
        elif not (region_start <= definition.start_byte and definition.end_byte <= old_region_end):
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
