#!/usr/bin/env python3
"""Write the server's settings into package.json from the table in docs/configuration.md.

Every row of the table becomes the VS Code setting `qcn.<key>` with the row's type, default,
range and meaning, in the table's order after the extension's own settings; run it after a
setting is added or changed (tests/editors/test_vscode_settings.py checks the result).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "editors" / "vscode" / "package.json"
DOCS = ROOT / "docs" / "configuration.md"
EXTENSION_KEYS = ("qcn.serverPath", "qcn.serverArgs", "qcn.trace.server", "qcn.popupCompletions")
ROW = re.compile(
    r"^\| `(?P<key>[^`]+)` \| (?P<type>.+?) \| `(?P<default>[^`]*)` \| (?P<range>[^|]*) \| "
    r"(?P<meaning>.*) \|$"
)
SIMPLE_TYPES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "str or null": {"type": ["string", "null"]},
    "int": {"type": "integer"},
    "int or null": {"type": ["integer", "null"]},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "list of strings": {"type": "array", "items": {"type": "string"}},
}
# Defaults the server takes from the environment: in VS Code they read "unset".
ENVIRONMENT_DEFAULTS: dict[str, Any] = {"$QCN_MODEL": None, "~/.cache/qcn-lsp": ""}


def json_type(doc_type: str) -> dict[str, Any]:
    if doc_type in SIMPLE_TYPES:
        return dict(SIMPLE_TYPES[doc_type])
    nullable = doc_type.endswith(" or null")
    choices: list[Any] = re.findall(r"'([^']*)'", doc_type.removesuffix(" or null"))
    if not choices:
        sys.exit(f"sync-settings: no VS Code type for the documented type {doc_type!r}")
    if nullable:
        return {"type": ["string", "null"], "enum": [*choices, None]}
    return {"type": "string", "enum": choices}


def setting(row: dict[str, str]) -> dict[str, Any]:
    spec = json_type(row["type"])
    default = row["default"]
    spec["default"] = (
        ENVIRONMENT_DEFAULTS[default] if default in ENVIRONMENT_DEFAULTS else json.loads(default)
    )
    if row["range"].strip():
        low, high = (float(part) for part in row["range"].split("\u2013"))
        spec["minimum"], spec["maximum"] = (int(v) if v.is_integer() else v for v in (low, high))
    spec["markdownDescription"] = row["meaning"]
    return spec


def main() -> None:
    rows = [m.groupdict() for line in DOCS.read_text().splitlines() if (m := ROW.match(line))]
    manifest = json.loads(PACKAGE.read_text())
    properties = manifest["contributes"]["configuration"]["properties"]
    kept = {key: spec for key, spec in properties.items() if key in EXTENSION_KEYS}
    old = {key: spec for key, spec in properties.items() if key not in kept}
    new = {f"qcn.{row['key']}": setting(row) for row in rows}
    # Keep what VS Code alone reads (e.g. a scope) and equal values as they are written.
    for key, spec in new.items():
        before = old.get(key, {})
        spec.update({k: v for k, v in before.items() if k not in spec or before[k] == spec[k]})
    manifest["contributes"]["configuration"]["properties"] = kept | new
    PACKAGE.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
