"""`qcn-lsp doctor`: what this machine has, and what to do about each problem."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qcn_lsp.settings import Settings

if TYPE_CHECKING:
    from engine.gguf_info import GGUFInfo

PINNED_LLAMA_CPP = "0.3.36"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


@dataclass
class Finding:
    ok: bool
    what: str
    fix: str = ""


def _check_python() -> Finding:
    ok = sys.version_info >= (3, 11)
    return Finding(
        ok,
        f"Python {platform.python_version()} ({sys.executable})",
        "" if ok else "qcn-lsp needs Python 3.11 or newer",
    )


def _check_llama_cpp() -> list[Finding]:
    try:
        version = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return [
            Finding(
                False,
                "llama-cpp-python is not installed",
                f"pip install llama-cpp-python=={PINNED_LLAMA_CPP} (compiles ~10 min)",
            )
        ]
    findings = [
        Finding(
            version == PINNED_LLAMA_CPP,
            f"llama-cpp-python {version}",
            ""
            if version == PINNED_LLAMA_CPP
            else f"the checkpoint cache relies on the state API of {PINNED_LLAMA_CPP}: "
            f"pip install llama-cpp-python=={PINNED_LLAMA_CPP}",
        )
    ]
    try:
        import llama_cpp
    except Exception as exc:  # a broken native build raises OSError and friends
        findings.append(
            Finding(
                False,
                f"llama_cpp does not import: {exc}",
                "reinstall: pip install --force-reinstall --no-cache-dir "
                f"llama-cpp-python=={PINNED_LLAMA_CPP}",
            )
        )
        return findings
    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    system = llama_cpp.llama_print_system_info().decode(errors="replace").strip()
    findings.append(
        Finding(
            True,
            f"llama.cpp build: GPU offload {'yes' if gpu else 'no'}; {system}",
            ""
            if gpu
            else "CPU-only build; for a GPU build reinstall with "
            "CMAKE_ARGS='-DGGML_CUDA=on' (or -DGGML_METAL=on, -DGGML_VULKAN=on)",
        )
    )
    return findings


def _check_grammars() -> Finding:
    """Load every grammar the index supports, with its tags query, as indexing would."""
    from context.languages import grammar, supported_languages

    have, broken = [], []
    for language in supported_languages():
        try:
            grammar(language)
            have.append(language)
        except (
            Exception
        ) as exc:  # a missing wheel, an ABI mismatch, a query that no longer compiles
            broken.append(f"{language} ({exc})")
    return Finding(
        not broken,
        f"tree-sitter grammars: {', '.join(have) or 'none'}"
        + (f"; broken: {', '.join(broken)}" if broken else ""),
        ""
        if not broken
        else "reinstall qcn-lsp's grammar wheels: pip install --force-reinstall -e . "
        "(files in those languages are indexed as plain text meanwhile)",
    )


# What `make demo` (scripts/demo.py) writes: the small model with Qwen's vocabulary, or the tiny
# byte-level one when Qwen's tokenizer files could not be fetched.
DEMO_MODELS = ("small-qwen.gguf", "tiny.gguf")


def demo_model_path(name: str | None = None) -> Path:
    """Where `make demo` writes its test model `name`: in the cache directory, so that every
    installation of qcn-lsp finds it. Without a name: the one it wrote (the first choice when
    neither is there)."""
    models = Path(Settings().cache.dir) / "models"
    if name is not None:
        return models / name
    return next(
        (models / n for n in DEMO_MODELS if (models / n).is_file()), models / DEMO_MODELS[0]
    )


def _check_model(model: Path | None, load: bool, settings: Settings) -> list[Finding]:
    from engine.gguf_info import GGUFInfoError, read_gguf_info

    if model is None:
        demo = demo_model_path()
        if not demo.is_file():
            return [
                Finding(
                    False,
                    "no model configured",
                    "set QCN_MODEL=/path/to/Qwen3-Coder-Next-*.gguf or the `model.path` "
                    "setting; for a test model: qcn-lsp make-test-model model.gguf",
                )
            ]
        # What `make demo` wrote: checked, and named, so that an editor can be pointed at it.
        return [
            Finding(
                False,
                f"no model configured; checking the demo's test model {demo} instead",
                f"set QCN_MODEL={demo} (random weights: its text is noise) or "
                "QCN_MODEL=/path/to/Qwen3-Coder-Next-*.gguf, or the `model.path` setting",
            ),
            *_check_model(demo, load, settings),
        ]
    try:
        info = read_gguf_info(model)
    except GGUFInfoError as exc:
        return [
            Finding(
                False,
                str(exc),
                "point model.path at a complete .gguf file "
                "(re-download it if the size differs from the published one)",
            )
        ]
    findings = [
        Finding(
            True,
            f"model {info.path} ({human_bytes(info.size_bytes)}), "
            f"architecture {info.architecture}, {info.name or 'unnamed'}",
        )
    ]
    if info.block_count is not None:
        findings.append(
            Finding(
                True,
                f"layers: {info.block_count} ({info.recurrent_layers} "
                f"recurrent/DeltaNet + {info.attention_layers} attention); "
                f"{'hybrid: checkpoint cache on' if info.hybrid else 'plain transformer'}",
            )
        )
    if not info.fim_tokens:
        findings.append(
            Finding(
                False,
                "the vocabulary has no FIM tokens",
                "inline completion needs a coder model with <|fim_prefix|> tokens",
            )
        )
    findings.extend(_check_memory(info, settings))
    if load:
        findings.append(_try_load(info.path, settings.model.context_length))
    return findings


def _check_memory(info: GGUFInfo, settings: Settings) -> list[Finding]:
    """The estimate per part, against this machine's RAM and GPU memory."""
    from engine.placement import gpu_devices
    from qcn_lsp.memory import advice, estimate, system_ram

    try:
        gpus = gpu_devices()
    except (OSError, AttributeError):  # a llama-cpp-python without these libraries
        gpus = []
    vram = sum(g.free_bytes for g in gpus) if gpus else None
    ram = system_ram()
    need = estimate(info, settings, gpu=vram is not None)
    parts = "; ".join(f"{what} {human_bytes(n)} ({place})" for what, n, place in need.parts)
    findings = [Finding(True, f"memory: {parts}")]
    if gpus:
        names = ", ".join(
            f"{g.description or g.name} {human_bytes(g.free_bytes)} free" for g in gpus
        )
        findings.append(Finding(True, f"GPU: {names}"))
    tips = advice(info, settings, ram=ram[0] if ram else None, vram=vram)
    if ram is not None:
        total, available = ram
        ok = need.ram + need.persist_peak <= total
        findings.append(
            Finding(
                ok,
                f"RAM: needs {human_bytes(need.ram)} (+ {human_bytes(need.persist_peak)} for a "
                f"moment while persisting the repository state) of {human_bytes(total)} "
                f"({human_bytes(available)} available)",
                "" if ok else "; ".join(t for t in tips if "checkpointMemoryMB" in t),
            )
        )
    if vram is not None:
        ok = need.gpu <= vram
        findings.append(
            Finding(
                ok,
                f"GPU memory: needs {human_bytes(need.gpu)} of {human_bytes(vram)} free",
                "" if ok else "; ".join(t for t in tips if "checkpointMemoryMB" not in t),
            )
        )
    return findings


def _try_load(path: Path, context_length: int) -> Finding:
    try:
        import llama_cpp
    except Exception as exc:
        return Finding(
            False,
            f"cannot load the model: llama_cpp unavailable ({exc})",
            "fix llama-cpp-python first (see above)",
        )
    started = time.perf_counter()
    try:
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=min(context_length, 4096), verbose=False)
    except Exception as exc:
        return Finding(
            False,
            f"llama.cpp could not load the model: {exc}",
            "check that the file is complete and that llama-cpp-python "
            f"{PINNED_LLAMA_CPP} supports its architecture",
        )
    try:
        hybrid = bool(llama_cpp.llama_model_is_hybrid(llm.model))
    finally:
        llm.close()
    return Finding(
        True,
        f"loads in llama.cpp in {time.perf_counter() - started:.2f} s; "
        f"llama_model_is_hybrid={hybrid}",
    )


def _check_cache(cache_dir: Path) -> Finding:
    if not cache_dir.exists():
        return Finding(True, f"cache directory {cache_dir} (not created yet)")
    size = sum(f.stat().st_size for f in cache_dir.rglob("*") if f.is_file())
    writable = os.access(cache_dir, os.W_OK)
    return Finding(
        writable,
        f"cache directory {cache_dir}: {human_bytes(size)}",
        "" if writable else f"make {cache_dir} writable or set `cache.dir`",
    )


def run_doctor(
    model: Path | None,
    cache_dir: Path | None,
    load: bool = True,
    settings: Settings | None = None,
    backend_url: str | None = None,
    backend_model: str | None = None,
    api_key_env: str = "",
) -> int:
    """`settings`: what the memory estimate is for (default: the defaults); `backend_url`:
    check that endpoint (backend.kind = openai) instead of a local GGUF."""
    settings = settings or Settings()
    model = model or (Path(settings.model.path) if settings.model.path else None)
    cache_dir = cache_dir or Path(settings.cache.dir)
    if backend_url is not None:
        from qcn_lsp.doctor_remote import check_remote

        # backend.kind = openai: the endpoint serves the model, no local GGUF is needed.
        checks = check_remote(backend_url, backend_model or settings.backend.model, api_key_env)
        served = [Finding(*check) for check in checks]
    else:
        served = _check_model(model, load, settings)
    findings = [
        _check_python(),
        *_check_llama_cpp(),
        _check_grammars(),
        *served,
        _check_cache(cache_dir),
    ]
    for finding in findings:
        print(f"[{'ok' if finding.ok else '!!'}] {finding.what}")
        if finding.fix:
            print(f"     -> {finding.fix}")
    problems = sum(not f.ok for f in findings)
    print(f"\n{problems} problem(s) found." if problems else "\nAll good.")
    return 1 if problems else 0
