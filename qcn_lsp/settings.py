"""The one settings schema of qcn-lsp.

Settings arrive as LSP ``initializationOptions``, from ``workspace/configuration`` (section
``qcn``) and with ``workspace/didChangeConfiguration``. Each source may give a nested object
(``{"model": {"path": ...}}``) or dotted keys (``{"model.path": ...}``). A bad key or value
never stops the server: it is reported as a warning naming the key and the default is kept.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin


def _default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "qcn-lsp")


@dataclass(frozen=True)
class SettingSpec:
    """One documented key: its dotted name, type, default and meaning."""

    key: str
    type: Any
    default: Any
    doc: str
    minimum: float | None = None
    maximum: float | None = None


# Ordered as docs/configuration.md presents them. Defaults that depend on the environment are
# resolved by `default_values()`.
SCHEMA: tuple[SettingSpec, ...] = (
    SettingSpec(
        "model.path",
        str | None,
        None,
        "Path of the GGUF model file. Defaults to the environment variable `QCN_MODEL`.",
    ),
    SettingSpec(
        "model.contextLength",
        int,
        32768,
        "Context window in tokens (the model supports up to 262144; each token of attention "
        "KV costs about 24 KiB on Qwen3-Coder-Next).",
        256,
        262144,
    ),
    SettingSpec(
        "model.threads",
        int | None,
        None,
        "CPU threads for llama.cpp; null means one per physical core.",
        1,
        1024,
    ),
    SettingSpec(
        "model.gpuLayers",
        int,
        -1,
        "Layers offloaded to the GPU (-1 = all, 0 = none); ignored by CPU-only builds.",
        -1,
        1000,
    ),
    SettingSpec(
        "backend.kind",
        Literal["local", "openai"],
        "local",
        "`local` runs the GGUF in-process; `openai` sends requests to an OpenAI-compatible "
        "endpoint (llama-server, vLLM, SGLang, Ollama, DashScope).",
    ),
    SettingSpec(
        "backend.baseUrl",
        str,
        "http://127.0.0.1:8080/v1",
        "Base URL of the OpenAI-compatible endpoint (backend.kind = openai).",
    ),
    SettingSpec(
        "backend.model",
        str,
        "qwen3-coder-next",
        "Model name sent to the OpenAI-compatible endpoint.",
    ),
    SettingSpec(
        "backend.apiKeyEnv",
        str,
        "",
        "Name of the environment variable that holds the endpoint's API key (the key itself "
        "never goes into settings).",
    ),
    SettingSpec(
        "context.budgetTokens",
        int,
        16384,
        "Tokens of repository context placed before the current file.",
        0,
        262144,
    ),
    SettingSpec(
        "context.ignore",
        list[str],
        [],
        "Extra gitignore-style patterns to leave out of the repository context.",
    ),
    SettingSpec(
        "completion.maxTokens",
        int,
        128,
        "Most tokens generated for one completion.",
        1,
        8192,
    ),
    SettingSpec(
        "completion.temperature",
        float,
        0.0,
        "Sampling temperature for completions; 0 is greedy (repeatable).",
        0.0,
        2.0,
    ),
    SettingSpec(
        "completion.debounceMs",
        int,
        75,
        "Base debounce before a completion request starts the model; adapted to typing speed.",
        0,
        5000,
    ),
    SettingSpec(
        "completion.suffixChars",
        int,
        320,
        "Characters after the cursor shown to the model (cut at a line end). They are re-read on "
        "every keystroke, so this is the main per-keystroke cost on a CPU.",
        0,
        20000,
    ),
    SettingSpec(
        "completion.streamNotifications",
        bool,
        False,
        "Send `qcn/completionProgress` notifications with the growing completion text "
        "(see docs/protocol.md). Editor plugins turn this on.",
    ),
    SettingSpec(
        "edits.maxTokens",
        int,
        1024,
        "Most tokens the model writes for one edit proposal (code action, rewrite, refactor step).",
        16,
        32768,
    ),
    SettingSpec(
        "edits.maxToolRounds",
        int,
        4,
        "Most model turns in one multi-file edit conversation (read_file / find_symbol answers).",
        1,
        16,
    ),
    SettingSpec(
        "engine.checkpointMemoryMB",
        int,
        1024,
        "RAM budget for recurrent-state checkpoints of the in-process engine.",
        16,
        1048576,
    ),
    SettingSpec(
        "engine.checkpointInterval",
        int,
        256,
        "Tokens between checkpoints inside the current file: an edit re-reads at most this "
        "many tokens before the cursor.",
        16,
        65536,
    ),
    SettingSpec(
        "cache.dir",
        str,
        None,
        "Directory for the persisted repo-context state and the symbol index. Defaults to "
        "`$XDG_CACHE_HOME/qcn-lsp` (`~/.cache/qcn-lsp`).",
    ),
)

SPECS: dict[str, SettingSpec] = {spec.key: spec for spec in SCHEMA}


def default_values() -> dict[str, Any]:
    """Every key with its default, environment-dependent defaults resolved now."""
    values: dict[str, Any] = {spec.key: spec.default for spec in SCHEMA}
    values["model.path"] = os.environ.get("QCN_MODEL") or None
    values["cache.dir"] = _default_cache_dir()
    return values


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in obj.items():
        key = f"{prefix}{name}"
        # A mapping is a section unless the key is itself a setting (none of ours is an object).
        if isinstance(value, Mapping) and key not in SPECS:
            flat.update(_flatten(value, key + "."))
        else:
            flat[key] = value
    return flat


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) is list:
        return "list of strings"
    args = [a for a in get_args(tp) if a is not type(None)]
    if args:
        return f"{_type_name(args[0])} or null"
    return getattr(tp, "__name__", str(tp))


def _check_value(spec: SettingSpec, value: Any) -> Any:
    """Return the value converted to the spec's type, or raise ValueError saying why."""
    tp = spec.type
    optional = type(None) in get_args(tp)
    if value is None:
        if optional:
            return None
        raise ValueError(f"expected {_type_name(tp)}, got null")
    if optional:
        tp = next(a for a in get_args(tp) if a is not type(None))
    if get_origin(tp) is Literal:
        if value not in get_args(tp):
            raise ValueError(f"expected one of {_type_name(tp)}, got {value!r}")
        return value
    if get_origin(tp) is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"expected a list of strings, got {value!r}")
        return list(value)
    # bool is an int subclass in Python but never a valid number setting.
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, tp)
    if not ok:
        raise ValueError(f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if spec.minimum is not None and value < spec.minimum:
        raise ValueError(f"must be at least {spec.minimum:g}, got {value!r}")
    if spec.maximum is not None and value > spec.maximum:
        raise ValueError(f"must be at most {spec.maximum:g}, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """Validated settings: a complete value for every key in SCHEMA."""

    values: dict[str, Any] = field(default_factory=default_values)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def merged(self, raw: Any, source: str) -> tuple[Settings, list[str]]:
        """These settings updated with `raw`; returns warnings for what was ignored."""
        if raw is None:
            return self, []
        if not isinstance(raw, Mapping):
            return self, [f"{source}: expected an object of qcn settings, got {type(raw).__name__}"]
        values = dict(self.values)
        warnings: list[str] = []
        for key, value in _flatten(raw).items():
            spec = SPECS.get(key)
            if spec is None:
                warnings.append(
                    f"{source}: unknown setting `{key}` ignored "
                    f"(see docs/configuration.md for the keys qcn-lsp knows)"
                )
                continue
            try:
                values[key] = _check_value(spec, value)
            except ValueError as exc:
                warnings.append(f"{source}: setting `{key}` {exc}; keeping {values[key]!r}")
        return dataclasses.replace(self, values=values), warnings

    def changed_keys(self, other: Settings) -> set[str]:
        return {k for k, v in self.values.items() if other.values.get(k) != v}
