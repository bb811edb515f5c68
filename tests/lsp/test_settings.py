"""The settings schema: merging, validation and its documentation."""

from __future__ import annotations

from pathlib import Path

from qcn_lsp.settings import SCHEMA, Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_key_is_documented() -> None:
    text = DOCS.read_text()
    for spec in SCHEMA:
        assert f"`{spec.key}`" in text, spec.key


def test_nested_dotted_and_wrapped_forms_merge() -> None:
    settings, warnings = Settings().merged(
        {"model": {"contextLength": 4096}, "completion.maxTokens": 7}, "test"
    )
    assert not warnings
    assert settings["model.contextLength"] == 4096
    assert settings["completion.maxTokens"] == 7
    assert settings.changed_keys(Settings()) == {"model.contextLength", "completion.maxTokens"}


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
    assert settings.values == Settings().values
    assert Settings().merged([1, 2], "src")[1][0].startswith("src: expected an object")


def test_optional_values_accept_null_and_floats_accept_ints() -> None:
    settings, warnings = Settings().merged(
        {"model": {"threads": None}, "completion": {"temperature": 1}}, "t"
    )
    assert not warnings
    assert settings["model.threads"] is None
    assert settings["completion.temperature"] == 1.0
