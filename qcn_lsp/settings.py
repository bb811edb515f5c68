"""The one settings schema of qcn-lsp: typed, frozen sections (`settings.model.path`,
`settings.completion.suffix_chars`, ...).

Settings arrive as LSP ``initializationOptions``, from ``workspace/configuration`` (section
``qcn``) and with ``workspace/didChangeConfiguration``. Each source may give a nested object
(``{"model": {"path": ...}}``) or dotted keys (``{"model.path": ...}``). A bad key or value
never stops the server: it is reported as a warning naming the key and the old value is kept.

A setting's wire key is its section's name and its field's name in camelCase
(`completion.suffix_chars` is `completion.suffixChars`); `SCHEMA` lists them all, in the order
docs/configuration.md presents them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from engine.formats import DEFAULT_SUFFIX_CHARS


def _model_from_environment() -> str | None:
    return os.environ.get("QCN_MODEL") or None


def _default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "qcn-lsp")


def setting(
    doc: str,
    default: Any = None,
    *,
    factory: Callable[[], Any] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    key: str | None = None,
) -> Any:
    """A section field with its documentation and range; `key` when camelCase is not enough."""
    metadata = {"doc": doc, "minimum": minimum, "maximum": maximum, "key": key}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class ModelSettings:
    path: str | None = setting(
        "Path of the GGUF model file. Defaults to the environment variable `QCN_MODEL`.",
        factory=_model_from_environment,
    )
    context_length: int = setting(
        "Context window in tokens (the model supports up to 262144; each token of attention "
        "KV costs about 24 KiB on Qwen3-Coder-Next).",
        32768,
        minimum=256,
        maximum=262144,
    )
    threads: int | None = setting(
        "CPU threads for llama.cpp; null means one per physical core.", minimum=1, maximum=1024
    )
    gpu_layers: int = setting(
        "Layers offloaded to the GPU (-1 = all, 0 = none); ignored by CPU-only builds.",
        -1,
        minimum=-1,
        maximum=1000,
    )
    cpu_moe: bool = setting(
        "Keep the routed experts (MoE expert weights) of every layer in system RAM while the "
        "rest goes to the GPU, as llama.cpp's `--cpu-moe`: the experts are ~95% of "
        "Qwen3-Coder-Next's weights but only 10 of 512 run per token, so a 48 GB Q4 model runs "
        "on a 24 GB GPU.",
        False,
    )
    n_cpu_moe: int = setting(
        "Keep the routed experts of the first N layers in system RAM (llama.cpp's "
        "`--n-cpu-moe N`): raise N until the rest fits the GPU. Ignored when `model.cpuMoe` is "
        "on.",
        0,
        minimum=0,
        maximum=1000,
    )
    cache_type_k: Literal["f16", "q8_0", "q4_0"] = setting(
        "Element type of the attention K cache (llama.cpp's `-ctk`): q8_0 takes 53% of f16's "
        "memory, q4_0 28%.",
        "f16",
    )
    cache_type_v: Literal["f16", "q8_0", "q4_0"] = setting(
        "Element type of the attention V cache (llama.cpp's `-ctv`); a quantized V cache needs "
        "flash attention (`model.flashAttention` auto or on).",
        "f16",
    )
    flash_attention: Literal["auto", "on", "off"] = setting(
        "Flash attention (llama.cpp's `-fa`): auto lets llama.cpp decide per device and turns "
        "it on for a quantized V cache.",
        "auto",
    )
    mmap: bool = setting(
        "Memory-map the GGUF (llama.cpp's default): weights are paged in from the file and "
        "shared with the page cache; off reads them into RAM at load.",
        True,
    )
    mlock: bool = setting(
        "Lock the weights in RAM so the OS never swaps or compresses them (llama.cpp's "
        "`--mlock`; needs a high enough `ulimit -l`, else llama.cpp warns and goes on).",
        False,
    )


@dataclass(frozen=True)
class BackendSettings:
    kind: Literal["local", "openai"] = setting(
        "`local` runs the GGUF in-process; `openai` sends requests to an OpenAI-compatible "
        "endpoint (llama-server, vLLM, SGLang, Ollama, DashScope).",
        "local",
    )
    base_url: str = setting(
        "Base URL of the OpenAI-compatible endpoint (backend.kind = openai).",
        "http://127.0.0.1:8080/v1",
    )
    model: str = setting("Model name sent to the OpenAI-compatible endpoint.", "qwen3-coder-next")
    api_key_env: str = setting(
        "Name of the environment variable that holds the endpoint's API key (the key itself "
        "never goes into settings).",
        "",
    )
    connect_timeout_s: float = setting(
        "Seconds to wait for the endpoint to accept a connection (retried with backoff).",
        5.0,
        minimum=0.1,
        maximum=300,
    )
    read_timeout_s: float = setting(
        "Seconds the endpoint may stay silent within an answer (its prefill of a long prompt "
        "included) before the request fails.",
        120.0,
        minimum=1,
        maximum=3600,
    )
    shape_requests: Literal["auto", "on", "off"] = setting(
        "Shape completion requests so that the endpoint keeps its hybrid-model state just "
        "before the text you type: a prefill-only request up to the start of the cursor's "
        "line whenever the text before that line changed. `auto` does it for llama-server "
        "(see docs/remote.md).",
        "auto",
    )


@dataclass(frozen=True)
class ContextSettings:
    budget_tokens: int = setting(
        "Tokens of repository context placed before the current file.",
        16384,
        minimum=0,
        maximum=262144,
    )
    ignore: tuple[str, ...] = setting(
        "Extra gitignore-style patterns to leave out of the repository context.", ()
    )


@dataclass(frozen=True)
class CompletionSettings:
    max_tokens: int = setting(
        "Most tokens generated for one completion.", 128, minimum=1, maximum=8192
    )
    temperature: float = setting(
        "Sampling temperature for completions; 0 is greedy (repeatable).",
        0.0,
        minimum=0.0,
        maximum=2.0,
    )
    debounce_ms: int = setting(
        "Base debounce before a completion request starts the model; adapted to typing speed.",
        75,
        minimum=0,
        maximum=5000,
    )
    suffix_chars: int = setting(
        "Characters after the cursor shown to the model (cut at a line end). They are re-read on "
        "every keystroke, so this is the main per-keystroke cost on a CPU.",
        DEFAULT_SUFFIX_CHARS,
        minimum=0,
        maximum=20000,
    )
    stream_notifications: bool = setting(
        "Send `qcn/completionProgress` notifications with the growing completion text "
        "(see docs/protocol.md). Editor plugins turn this on.",
        False,
    )
    index_wait_ms: int = setting(
        "How long a completion waits, once the model is loaded, for a workspace index that is "
        "still being built, so that its prompt has the repository context from the start (a "
        "prompt without it is read once more in full when the index is ready). No wait without "
        "a workspace folder or after a failed index; 0 never waits.",
        10000,
        minimum=0,
        maximum=600000,
    )
    timeout_ms: int = setting(
        "Longest a completion request waits for its answer. Longer work (the model still "
        "loading, the first prompt reading the whole repository context) goes on in the "
        "background: an automatic request is answered empty and an invoked one with an error "
        "saying why, and a request asking again at that spot gets the finished completion. "
        "Keep it below the editor's own request timeout (eglot: 10 s).",
        8000,
        minimum=100,
        maximum=600000,
    )


@dataclass(frozen=True)
class EditsSettings:
    max_tokens: int = setting(
        "Most tokens the model writes for one edit proposal (code action, rewrite, refactor step).",
        1024,
        minimum=16,
        maximum=32768,
    )
    max_tool_rounds: int = setting(
        "Most model turns in one multi-file edit conversation (read_file / find_symbol answers).",
        4,
        minimum=1,
        maximum=16,
    )


@dataclass(frozen=True)
class EngineSettings:
    checkpoint_memory_mb: int = setting(
        "RAM budget for recurrent-state checkpoints of the in-process engine, both lanes "
        "together (completions three quarters, edits and chat one quarter). A checkpoint of "
        "Qwen3-Coder-Next is 75.4 MiB: the default holds 10 + 3.",
        1024,
        minimum=16,
        maximum=1048576,
        key="checkpointMemoryMB",
    )
    checkpoint_interval: int = setting(
        "Tokens between checkpoints inside the current file: an edit re-reads at most this "
        "many tokens before the cursor.",
        256,
        minimum=16,
        maximum=65536,
    )
    snapshot_memory_mb: int = setting(
        "RAM budget for full state snapshots of prompts the in-process engine left (another "
        "file, another repository context): going back restores one instead of re-reading the "
        "file. 0 turns it off.",
        4096,
        minimum=0,
        maximum=1048576,
        key="snapshotMemoryMB",
    )
    prompt_cache: bool = setting(
        "Reuse the model state of earlier requests (checkpoints, persisted state). `false` "
        "prefills every prompt from scratch in a fresh state and persists nothing: slow, for "
        "checking that cached answers are exact (compare `promptDigest` and the text) and for "
        "bug reports.",
        True,
    )


@dataclass(frozen=True)
class CacheSettings:
    dir: str = setting(
        "Directory for the persisted repo-context state and the symbol index. Defaults to "
        "`$XDG_CACHE_HOME/qcn-lsp` (`~/.cache/qcn-lsp`).",
        factory=_default_cache_dir,
    )
    state_disk_mb: int = setting(
        "Most disk space the persisted model state may take in `cache.dir`; the oldest "
        "entries are evicted first. One entry on Qwen3-Coder-Next is its 75 MiB recurrent "
        "state plus 24 KiB per prompt token (0.8 GiB at 32K tokens).",
        16384,
        minimum=64,
        maximum=16777216,
        key="stateDiskMB",
    )


@dataclass(frozen=True)
class LogSettings:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = setting(
        "Level of the server's log on stderr, which editors keep in their LSP log (Neovim's "
        "`lsp.log` marks every such line `[ERROR]`). Wins over the `--log-level` flag once "
        "the settings arrive; null means the flag's level, `WARNING` unless given."
    )


@dataclass(frozen=True)
class SettingSpec:
    """One documented key: its dotted wire name, where it lives, its type and meaning."""

    key: str
    section: str
    name: str
    type: Any
    doc: str
    minimum: float | None = None
    maximum: float | None = None


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


@dataclass(frozen=True)
class Settings:
    """Validated settings: every section complete, every value of its declared type."""

    model: ModelSettings = field(default_factory=ModelSettings)
    backend: BackendSettings = field(default_factory=BackendSettings)
    context: ContextSettings = field(default_factory=ContextSettings)
    completion: CompletionSettings = field(default_factory=CompletionSettings)
    edits: EditsSettings = field(default_factory=EditsSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    log: LogSettings = field(default_factory=LogSettings)

    @property
    def values(self) -> dict[str, Any]:
        """Every key with its value, as JSON (the settings report and `qcn.status`)."""
        return {spec.key: _json_value(self._get(spec)) for spec in SCHEMA}

    def _get(self, spec: SettingSpec) -> Any:
        return getattr(getattr(self, spec.section), spec.name)

    def merged(self, raw: Any, source: str) -> tuple[Settings, list[str]]:
        """These settings updated with `raw`; returns warnings for what was ignored."""
        if raw is None:
            return self, []
        if not isinstance(raw, Mapping):
            return self, [f"{source}: expected an object of qcn settings, got {type(raw).__name__}"]
        updates: dict[str, dict[str, Any]] = {}
        warnings: list[str] = []
        for key, value in _flatten(raw).items():
            spec = SPECS.get(key)
            if spec is None:
                warnings.append(
                    f"{source}: unknown setting `{key}` ignored "
                    f"(see docs/configuration.md for the keys qcn-lsp knows)"
                )
                continue
            section = updates.setdefault(spec.section, {})
            try:
                section[spec.name] = _check_value(spec, value)
            except ValueError as exc:
                kept = section.get(spec.name, self._get(spec))
                warnings.append(f"{source}: setting `{key}` {exc}; keeping {_json_value(kept)!r}")
        sections = {
            name: dataclasses.replace(getattr(self, name), **changes)
            for name, changes in updates.items()
        }
        return dataclasses.replace(self, **sections), warnings

    def changed_keys(self, other: Settings) -> set[str]:
        return {spec.key for spec in SCHEMA if self._get(spec) != other._get(spec)}


def _schema() -> tuple[SettingSpec, ...]:
    specs = []
    for section in dataclasses.fields(Settings):
        section_type = get_type_hints(Settings)[section.name]
        hints = get_type_hints(section_type)
        for item in dataclasses.fields(section_type):
            meta = item.metadata
            specs.append(
                SettingSpec(
                    key=f"{section.name}.{meta['key'] or _camel(item.name)}",
                    section=section.name,
                    name=item.name,
                    type=hints[item.name],
                    doc=meta["doc"],
                    minimum=meta["minimum"],
                    maximum=meta["maximum"],
                )
            )
    return tuple(specs)


SCHEMA: tuple[SettingSpec, ...] = _schema()
SPECS: dict[str, SettingSpec] = {spec.key: spec for spec in SCHEMA}


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


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
    if get_origin(tp) is tuple:
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
    if get_origin(tp) is tuple:  # a JSON list of strings
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"expected a list of strings, got {value!r}")
        return tuple(value)
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
