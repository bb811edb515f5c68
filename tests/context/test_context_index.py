"""Workspace scan, tags, symbol graph, incremental updates and persistence of context/."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from context.index import RepoIndex
from context.languages import grammar, language_for_path
from context.tags import FileTags, extract_tags
from context.textdiff import common_affixes

FIXTURE = Path(__file__).parent.parent / "fixtures" / "repos" / "poly"


@pytest.fixture(scope="module")
def poly_index() -> RepoIndex:
    index = RepoIndex([FIXTURE])
    index.build()
    return index


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    target = tmp_path / "poly"
    shutil.copytree(FIXTURE, target)
    return target


def full_tags(path: str, source: bytes) -> FileTags:
    language = language_for_path(path)
    assert language is not None
    import tree_sitter

    tree = tree_sitter.Parser(grammar(language).language).parse(source)
    return extract_tags(grammar(language), tree, source)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "py/app/models.py",
            {"User": "class", "display_name": "function", "make_user": "function"},
        ),
        ("js/util.js", {"formatName": "function", "Greeter": "class", "greet": "method"}),
        ("ts/shapes.ts", {"Shape": "interface", "Circle": "class", "totalArea": "function"}),
        ("ts/view.tsx", {"AreaLabel": "function"}),
        ("go/geom/geom.go", {"Point": "type", "Distance": "function"}),
        (
            "rust/src/counter.rs",
            {"Counter": "class", "increment": "method", "make_counter": "function"},
        ),
        ("java/com/example/Greeter.java", {"Greeter": "class", "greet": "method"}),
        ("c/vec.h", {"vec": "class", "vec_len": "function"}),
        ("cpp/stack.hpp", {"Stack": "class", "push": "function", "size": "function"}),
    ],
)
def test_definitions_per_language(
    poly_index: RepoIndex, path: str, expected: dict[str, str]
) -> None:
    tags = poly_index.graph.files[path]
    found = {d.name: d.kind for d in tags.definitions}
    for name, kind in expected.items():
        assert found.get(name) == kind, (path, name, found)
    for definition in tags.definitions:
        assert definition.name in definition.signature
        assert definition.start_line <= definition.end_line


@pytest.mark.parametrize(
    ("name", "definer", "referrer"),
    [
        ("make_user", "py/app/models.py", "py/app/service.py"),
        ("formatName", "js/util.js", "js/main.js"),
        ("totalArea", "ts/shapes.ts", "ts/view.tsx"),
        ("Distance", "go/geom/geom.go", "go/main.go"),
        ("make_counter", "rust/src/counter.rs", "rust/src/main.rs"),
        ("Greeter", "java/com/example/Greeter.java", "java/com/example/App.java"),
        ("vec_len", "c/vec.h", "c/main.c"),
        ("Stack", "cpp/stack.hpp", "cpp/main.cpp"),
    ],
)
def test_references_and_dependents(
    poly_index: RepoIndex, name: str, definer: str, referrer: str
) -> None:
    graph = poly_index.graph
    assert definer in {location.path for location in graph.definitions(name)}
    assert referrer in {location.path for location in graph.references(name)}
    assert referrer in graph.dependents(definer)


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("py/app/service.py", "py/app/models.py"),
        ("js/main.js", "js/util.js"),
        ("ts/view.tsx", "ts/shapes.ts"),
        ("go/main.go", "go/geom/geom.go"),
        ("rust/src/main.rs", "rust/src/counter.rs"),
        ("java/com/example/App.java", "java/com/example/Greeter.java"),
        ("c/main.c", "c/vec.h"),
        ("cpp/main.cpp", "cpp/stack.hpp"),
    ],
)
def test_imports_resolve_to_files(poly_index: RepoIndex, importer: str, imported: str) -> None:
    assert imported in poly_index.graph.imports(importer)


def test_plain_text_files_have_no_tags(poly_index: RepoIndex) -> None:
    readme = poly_index.graph.files["README.md"]
    assert readme.language is None
    assert readme.definitions == () and readme.references == ()


def test_scan_honours_gitignore_secrets_and_limits(workspace: Path, tmp_path: Path) -> None:
    (workspace / ".gitignore").write_text("*.log\n!keep.log\nbuild/\n")
    (workspace / "py" / ".gitignore").write_text("generated_*.py\n/only_here.py\n")
    created = {
        "debug.log": "x",
        "keep.log": "kept",
        "build/out.py": "x = 1\n",
        "py/generated_models.py": "x = 1\n",
        "py/app/generated_deeper.py": "x = 1\n",
        "py/only_here.py": "x = 1\n",
        "py/app/only_here.py": "x = 1\n",
        "js/generated_not_here.py": "x = 1\n",
        ".env": "TOKEN=1\n",
        ".env.local": "TOKEN=1\n",
        "deploy/id_rsa": "key\n",
        "certs/server.pem": "pem\n",
        "certs/server.key": "key\n",
        "config/credentials.json": "{}\n",
        "vendor/skipme.py": "x = 1\n",
        "static/app.min.js": "var a=1;\n",
        "proto/api_pb2.py": "x = 1\n",
        "gen/code.go": "// Code generated by protoc. DO NOT EDIT.\npackage gen\n",
        "minified.js": "var a=" + "1+" * 5000 + "1;\n",
    }
    for relative, content in created.items():
        (workspace / relative).parent.mkdir(parents=True, exist_ok=True)
        (workspace / relative).write_text(content)
    (workspace / "blob.dat").write_bytes(b"\x00\x01\x02binary")
    (workspace / "big.py").write_text("x = 1\n" * 50_000)
    outside = tmp_path / "outside.py"
    outside.write_text("secret = 1\n")
    os.symlink(outside, workspace / "escape.py")
    os.symlink(workspace / "py" / "app" / "models.py", workspace / "alias.py")

    index = RepoIndex([workspace], ignore=["vendor/"], max_file_bytes=100_000)
    index.build()
    keys = set(index.graph.files)
    assert {"keep.log", "py/app/only_here.py", "js/generated_not_here.py"} <= keys
    assert "alias.py" in keys
    excluded = {
        "debug.log",
        "build/out.py",
        "py/generated_models.py",
        "py/app/generated_deeper.py",
        "py/only_here.py",
        ".env",
        ".env.local",
        "deploy/id_rsa",
        "certs/server.pem",
        "certs/server.key",
        "config/credentials.json",
        "vendor/skipme.py",
        "static/app.min.js",
        "proto/api_pb2.py",
        "gen/code.go",
        "minified.js",
        "blob.dat",
        "big.py",
        "escape.py",
    }
    assert not (keys & excluded), keys & excluded
    assert not index.scanner.accepts(workspace / "debug.log")
    assert index.scanner.accepts(workspace / "keep.log")


# One file per language family with nested blocks.
EDITED_FILES = [
    "py/app/service.py",
    "ts/shapes.ts",
    "go/geom/geom.go",
    "rust/src/counter.rs",
    "cpp/stack.hpp",
    "java/com/example/App.java",
]


def _random_edit(rng: random.Random, text: str) -> str:
    position = rng.randrange(len(text) + 1)
    action = rng.random()
    if action < 0.5:
        return (
            text[:position]
            + rng.choice(
                ["x", "(", ")", "\n", " ", "def f():\n    ", "{", "}", ";", "é", "foo(bar)"]
            )
            + text[position:]
        )
    if action < 0.8:
        return text[:position] + text[position + rng.randrange(1, 6) :]
    source = rng.randrange(len(text) + 1)
    return text[:position] + text[source : source + 40] + text[position:]


@pytest.mark.parametrize("path", EDITED_FILES)
def test_incremental_updates_match_full_parse(workspace: Path, path: str) -> None:
    index = RepoIndex([workspace])
    index.build()
    rng = random.Random(path)
    text = (workspace / path).read_text()
    # A bigger file exercises edits inside nested blocks far from the start.
    text = text * 4
    index.update_document(str(workspace / path), text)
    for step in range(60):
        new_text = _random_edit(rng, text)
        tags = index.update_document(str(workspace / path), new_text)
        expected = full_tags(path, new_text.encode())
        assert tags.definitions == expected.definitions, step
        assert tags.references == expected.references, step
        assert tags.imports == expected.imports, step
        text = new_text
    assert index.graph.files[path] == tags


@pytest.mark.parametrize("path", EDITED_FILES)
def test_typing_new_lines_matches_full_parse(workspace: Path, path: str) -> None:
    """Typing a new statement at the end of every line, one character at a time: the edits
    fall between statements, inside blocks and across half-typed brackets."""
    index = RepoIndex([workspace])
    index.build()
    text = (workspace / path).read_text()
    index.update_document(str(workspace / path), text)
    typed = "\n    value = compute(arg, other=[1, 2]);  // x"
    for row in range(0, text.count("\n"), 3):
        lines = text.split("\n")
        offset = sum(len(line) + 1 for line in lines[:row]) + len(lines[row])
        for character in typed:
            text = text[:offset] + character + text[offset:]
            offset += 1
            tags = index.update_document(str(workspace / path), text)
            expected = full_tags(path, text.encode())
            assert tags.definitions == expected.definitions, (row, offset)
            assert tags.references == expected.references, (row, offset)
            assert tags.imports == expected.imports, (row, offset)


def test_renamed_definition_moves_in_the_graph(workspace: Path) -> None:
    index = RepoIndex([workspace])
    index.build()
    path = str(workspace / "py" / "app" / "models.py")
    old = (workspace / "py" / "app" / "models.py").read_text()
    index.update_document(path, old)
    tags = index.update_document(path, old.replace("def make_user", "def make_person"))
    assert "make_person" in tags.defined_names
    assert [loc.path for loc in index.graph.definitions("make_person")] == ["py/app/models.py"]
    assert index.graph.definitions("make_user") == []


def _naive_affixes(old: str, new: str) -> tuple[int, int]:
    prefix = 0
    while prefix < min(len(old), len(new)) and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while (
        suffix < min(len(old), len(new)) - prefix
        and old[len(old) - 1 - suffix] == new[len(new) - 1 - suffix]
    ):
        suffix += 1
    return prefix, suffix


def test_common_affixes_of_str_and_bytes() -> None:
    rng = random.Random(5)
    base = "".join(rng.choice("ab\né") for _ in range(9000))
    for _ in range(200):
        old = _random_edit(rng, base)
        new = _random_edit(rng, old)
        assert common_affixes(old, new) == _naive_affixes(old, new)
        old_bytes, new_bytes = old.encode(), new.encode()
        prefix, suffix = common_affixes(old_bytes, new_bytes)
        assert (prefix, suffix) == _naive_affixes(
            old_bytes.decode("latin-1"), new_bytes.decode("latin-1")
        )
    # The suffix never overlaps the prefix: "aaa" -> "aaaa" is one "a" inserted at the end.
    assert common_affixes("aaa", "aaaa") == (3, 0)
    assert common_affixes(b"", b"x") == (0, 0)


def test_persistence_reparses_only_changed_files(workspace: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = RepoIndex([workspace], cache_dir=cache)
    stats = first.build()
    first.close()
    assert stats.parsed == stats.files
    second = RepoIndex([workspace], cache_dir=cache)
    stats = second.build()
    assert stats.parsed == 0 and stats.cached == stats.files
    second.close()
    models = workspace / "py" / "app" / "models.py"
    models.write_text(models.read_text() + "\n\ndef added() -> None:\n    pass\n")
    third = RepoIndex([workspace], cache_dir=cache)
    stats = third.build()
    assert stats.parsed == 1
    assert third.graph.definitions("added")[0].path == "py/app/models.py"
    third.close()


def test_file_creation_deletion_and_rename(workspace: Path) -> None:
    index = RepoIndex([workspace])
    index.build()
    created = workspace / "py" / "app" / "extra.py"
    created.write_text("def brand_new():\n    return 1\n")
    index.refresh_file(created)
    assert index.graph.definitions("brand_new")[0].path == "py/app/extra.py"
    renamed = workspace / "py" / "app" / "renamed.py"
    created.rename(renamed)
    index.rename(created, renamed)
    assert [loc.path for loc in index.graph.definitions("brand_new")] == ["py/app/renamed.py"]
    renamed.unlink()
    index.refresh_file(renamed)
    assert index.graph.definitions("brand_new") == []
    assert "py/app/renamed.py" not in index.graph.files


def test_rebuild_drops_deleted_files(workspace: Path) -> None:
    index = RepoIndex([workspace])
    index.build()
    (workspace / "js" / "util.js").unlink()
    index.build()
    assert "js/util.js" not in index.graph.files
    assert index.graph.definitions("formatName") == []


def test_awkward_inputs_do_not_fail(workspace: Path) -> None:
    (workspace / "latin1.py").write_bytes(b"def caf\xe9():\n    return '\xff\xfe'\n")
    (workspace / "nested.py").write_text("x = " + "(\n" * 3000 + "1" + ")\n" * 3000)
    (workspace / "nested.js").write_text("function f() {\n" * 500 + "}\n" * 500 + "\n")
    (workspace / "notes.xyz").write_text("plain words\n")
    (workspace / "unclosed.rs").write_text("fn broken( {\n  let x = \n")
    index = RepoIndex([workspace])
    index.build()
    assert "latin1.py" in index.graph.files
    assert index.graph.files["notes.xyz"].language is None
    assert index.graph.files["nested.js"].definitions
    huge = "x = 1\n" * 300_000
    tags = index.update_document(str(workspace / "huge.py"), huge)
    assert tags.language is None
    index.update_document(str(workspace / "latin1.py"), b"def ok():\n  '\xff'\n")
    assert index.graph.definitions("ok")[0].path == "latin1.py"


def test_multiple_roots_prefix_keys(tmp_path: Path) -> None:
    first = tmp_path / "alpha"
    second = tmp_path / "beta"
    shutil.copytree(FIXTURE / "py", first)
    shutil.copytree(FIXTURE / "js", second)
    index = RepoIndex([first, second])
    index.build()
    assert "alpha/app/models.py" in index.graph.files
    assert "beta/util.js" in index.graph.files
    assert index.key(second / "main.js") == "beta/main.js"
