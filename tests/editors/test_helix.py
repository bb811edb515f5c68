"""editors/helix/languages.toml against Helix's documented schema and language list.

Helix cannot be installed here; tests/editors/helix_reference.json holds what the checks need
from Helix 25.07.1 (its source is named in the file), so nothing is fetched at test time.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest

from context.languages import EXTENSIONS, supported_languages
from qcn_lsp.settings import Settings
from tests.editors.tools import EDITORS_DIR
from tests.lsp.helpers import REPO_ROOT

CONFIG = REPO_ROOT / "editors" / "helix" / "languages.toml"
REFERENCE = json.loads((EDITORS_DIR / "helix_reference.json").read_text())
SERVER = "qcn-lsp"
# Helix names .jsx files "jsx"; the context index reads them as JavaScript.
HELIX_NAMES = {"javascript": {"javascript", "jsx"}}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    with CONFIG.open("rb") as handle:
        return tomllib.load(handle)


def entry_name(entry: str | dict[str, Any]) -> str:
    return entry if isinstance(entry, str) else entry["name"]


def test_top_level_tables(config: dict[str, Any]) -> None:
    assert set(config) <= {"language", "language-server", "grammar", "use-grammars"}


def test_qcn_server_definition(config: dict[str, Any]) -> None:
    servers = config["language-server"]
    assert list(servers) == [SERVER]
    server = servers[SERVER]
    assert set(server) <= set(REFERENCE["language_server_keys"]), server
    assert server["command"] == "qcn-lsp"
    assert all(isinstance(arg, str) for arg in server["args"])
    assert isinstance(server["timeout"], int) and server["timeout"] > 20  # Helix's default
    # The config is qcn-lsp's settings, under "qcn" for workspace/configuration (the server
    # takes initializationOptions with or without that wrapper).
    assert set(server["config"]) == {"qcn"}
    _, warnings = Settings().merged(server["config"]["qcn"], "helix")
    assert not warnings


def test_languages_follow_the_schema(config: dict[str, Any]) -> None:
    known = set(REFERENCE["language_names"])
    defaults = REFERENCE["default_language_servers"]
    for language in config["language"]:
        name = language["name"]
        assert name in known, f"{name} is not a Helix language"
        assert set(language) <= set(REFERENCE["language_keys"]), language
        servers = language["language-servers"]
        for entry in servers:
            if isinstance(entry, dict):
                assert set(entry) <= set(REFERENCE["language_server_entry_keys"]), entry
                features = entry.get("only-features", []) + entry.get("except-features", [])
                assert set(features) <= set(REFERENCE["features"]), entry
        # Helix's own servers first, unchanged; qcn-lsp last, limited to what it offers.
        names = [entry_name(entry) for entry in servers]
        assert names == [*defaults[name], SERVER], name
        assert servers[-1]["only-features"] == ["completion", "code-action", "workspace-command"]


def test_every_indexed_language_is_configured(config: dict[str, Any]) -> None:
    configured = {language["name"] for language in config["language"]}
    for language in supported_languages():
        assert HELIX_NAMES.get(language, {language}) <= configured, language
    assert set(EXTENSIONS.values()) == set(supported_languages())


def test_reference_names_its_source() -> None:
    assert "helix-editor/helix" in REFERENCE["source"] and "25.07.1" in REFERENCE["source"]
