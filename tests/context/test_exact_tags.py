"""Tags of an edited document equal a fresh parse's, syntax errors included.

Random edits (inserts of brackets and half statements, deletions, pasted chunks) on one file
per language family. While an edit leaves syntax errors the fast incremental update may be
inexact (tree-sitter's incremental parse after error recovery, its changed ranges); once the
typing pauses `verify_document` makes the tags a fresh parse's again.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from context.index import RepoIndex
from tests.context.test_context_index import EDITED_FILES, _random_edit, full_tags

POLY = Path(__file__).resolve().parents[1] / "fixtures" / "repos" / "poly"


@pytest.mark.parametrize("path", EDITED_FILES)
# Seeds that hit both kinds of inexact update: region re-tags missing nodes (0: Rust,
# 2: TypeScript) and incremental trees differing from fresh ones (7: Go, 9: Java).
@pytest.mark.parametrize("seed", [0, 2, 7, 9])
def test_tags_after_a_pause_equal_a_fresh_parse(path: str, seed: int) -> None:
    index = RepoIndex([POLY])
    rng = random.Random(f"{path}-{seed}")
    text = (POLY / path).read_text() * 4
    index.update_document(str(POLY / path), text)
    for step in range(60):
        text = _random_edit(rng, text)
        tags = index.update_document(str(POLY / path), text)
        expected = full_tags(path, text.encode())
        if index.needs_verify(path):
            assert index.verify_document(path)
            tags = index.graph.files[path]
        assert not index.needs_verify(path)
        assert (tags.definitions, tags.references, tags.imports) == (
            expected.definitions,
            expected.references,
            expected.imports,
        ), (seed, step)
