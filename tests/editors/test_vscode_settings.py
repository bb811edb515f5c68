"""The VS Code extension's settings are the server's settings: same keys, types, defaults,
bounds and descriptions as docs/configuration.md (package.json is checked against the table)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.lsp.helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "editors" / "vscode" / "package.json"
# The range column reads "LOW \u2013 HIGH" (an en dash).
TABLE_ROW = re.compile(
    r"^\| `(?P<key>[^`]+)` \| (?P<type>.+?) \| (?P<default>`[^`]*`) \| (?P<range>[^|]*) \| "
    r"(?P<meaning>.*) \|$"
)
# Settings of the extension itself (how to start the server, what VS Code shows).
EXTENSION_KEYS = {"serverPath", "serverArgs", "trace.server", "popupCompletions"}
# Defaults the server takes from the environment: the VS Code default stands for "unset".
ENVIRONMENT_DEFAULTS = {"$QCN_MODEL": None, "~/.cache/qcn-lsp": ""}
TYPES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "str or null": {"type": ["string", "null"]},
    "int": {"type": "integer"},
    "int or null": {"type": ["integer", "null"]},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "list of strings": {"type": "array", "items": {"type": "string"}},
}


def documented() -> list[dict[str, str]]:
    text = (REPO_ROOT / "docs" / "configuration.md").read_text()
    rows = [m.groupdict() for line in text.splitlines() if (m := TABLE_ROW.match(line))]
    assert len(rows) >= 20, "the settings table of docs/configuration.md was not found"
    return rows


def contributed() -> dict[str, dict[str, Any]]:
    manifest = json.loads(PACKAGE.read_text())
    properties: dict[str, dict[str, Any]] = manifest["contributes"]["configuration"]["properties"]
    assert all(name.startswith("qcn.") for name in properties)
    return {name.removeprefix("qcn."): spec for name, spec in properties.items()}


def expected_type(doc_type: str) -> dict[str, Any]:
    if doc_type in TYPES:
        return TYPES[doc_type]
    # Choices read "'a' \\| 'b'" (the bar escaped inside a table cell), maybe "or null".
    choices_text, nullable = doc_type.removesuffix(" or null"), doc_type.endswith(" or null")
    choices: list[str | None] = list(re.findall(r"'([^']*)'", choices_text))
    assert choices and " \\| ".join(f"'{c}'" for c in choices) == choices_text, doc_type
    if nullable:
        return {"type": ["string", "null"], "enum": [*choices, None]}
    return {"type": "string", "enum": choices}


def test_every_documented_setting_is_a_vscode_setting_and_nothing_else() -> None:
    keys = [row["key"] for row in documented()]
    assert set(contributed()) - EXTENSION_KEYS == set(keys)
    assert set(contributed()) >= EXTENSION_KEYS
    # In the order of the documentation, after the extension's own.
    assert [key for key in contributed() if key not in EXTENSION_KEYS] == keys


@pytest.mark.parametrize("row", documented(), ids=lambda row: row["key"])
def test_setting_matches_the_documentation(row: dict[str, str]) -> None:
    spec = contributed()[row["key"]]
    wanted = expected_type(row["type"])
    assert {name: spec.get(name) for name in wanted} == wanted

    doc_default = row["default"].strip("`")
    default = (
        ENVIRONMENT_DEFAULTS[doc_default]
        if doc_default in ENVIRONMENT_DEFAULTS
        else json.loads(doc_default)
    )
    assert spec["default"] == default
    assert type(spec["default"]) is type(default)

    bounds = row["range"].strip()
    if bounds:
        low, high = (part.strip() for part in bounds.split("\u2013"))
        assert (spec["minimum"], spec["maximum"]) == (float(low), float(high))
    else:
        assert "minimum" not in spec and "maximum" not in spec

    assert spec["markdownDescription"] == row["meaning"]


def test_the_extension_sends_only_server_settings() -> None:
    """The extension's list of its own keys (never sent to the server) is this test's list."""
    source = (REPO_ROOT / "editors" / "vscode" / "src" / "settings.ts").read_text()
    block = re.search(r"EXTENSION_KEYS: readonly string\[\] = \[(.*?)\];", source, re.S)
    assert block is not None
    assert set(re.findall(r'"([^"]+)"', block.group(1))) == EXTENSION_KEYS


def test_package_json_is_the_committed_manifest() -> None:
    manifest = json.loads(PACKAGE.read_text())
    assert manifest["engines"]["vscode"] == "^1.100.0"
    assert manifest["dependencies"]["vscode-languageclient"].split(".")[0] == "11"
    lock = json.loads((PACKAGE.parent / "package-lock.json").read_text())
    assert lock["packages"][""]["dependencies"] == manifest["dependencies"]
