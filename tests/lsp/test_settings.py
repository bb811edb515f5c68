"""The settings schema: typed sections, merging, validation and its documentation."""

from __future__ import annotations

import re
from pathlib import Path

from engine.formats import DEFAULT_SUFFIX_CHARS
from qcn_lsp.settings import SCHEMA, Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_documented_table_is_the_schema() -> None:
    rows = re.findall(r"^\| `([a-zA-Z]+\.[a-zA-Z]+)` \|(.*)$", DOCS.read_text(), re.MULTILINE)
    assert [key for key, _ in rows] == [spec.key for spec in SCHEMA]
    for (key, rest), spec in zip(rows, SCHEMA, strict=True):
        assert rest.endswith(f" {spec.doc} |"), key


def test_sections_are_typed_and_the_wire_keys_derived() -> None:
    settings = Settings()
    assert settings.completion.suffix_chars == DEFAULT_SUFFIX_CHARS
    assert settings.context.ignore == ()
    assert {"model.contextLength", "engine.checkpointMemoryMB", "completion.indexWaitMs"} <= {
        spec.key for spec in SCHEMA
    }
    assert settings.values["context.ignore"] == []  # JSON, as the settings report shows it


def test_nested_dotted_and_wrapped_forms_merge() -> None:
    settings, warnings = Settings().merged(
        {"model": {"contextLength": 4096}, "completion.maxTokens": 7}, "test"
    )
    assert not warnings
    assert settings.model.context_length == 4096
    assert settings.completion.max_tokens == 7
    assert settings.changed_keys(Settings()) == {"model.contextLength", "completion.maxTokens"}
    assert settings.model.path == Settings().model.path  # untouched keys keep their values


def test_bad_values_are_named_and_ignored() -> None:
    settings, warnings = Settings().merged(
        {
            "model": {"threads": 0, "gpuLayers": 1.5, "path": 3},
            "completion": {"temperature": "hot", "streamNotifications": 1},
            "context": {"ignore": ["ok", 3]},
            "nonsense": {"deep": True},
        },
        "src",
    )
    text = "\n".join(warnings)
    for key in (
        "model.threads",
        "model.gpuLayers",
        "model.path",
        "completion.temperature",
        "completion.streamNotifications",
        "context.ignore",
        "nonsense.deep",
    ):
        assert f"`{key}`" in text
    assert settings == Settings()
    assert Settings().merged([1, 2], "src")[1][0].startswith("src: expected an object")


def test_optional_values_accept_null_and_floats_accept_ints() -> None:
    settings, warnings = Settings().merged(
        {"model": {"threads": None}, "completion": {"temperature": 1}, "context.ignore": ["a"]},
        "t",
    )
    assert not warnings
    assert settings.model.threads is None
    assert settings.completion.temperature == 1.0
    assert settings.context.ignore == ("a",)
