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

from qcn_lsp.doctor_memory import human_bytes
from qcn_lsp.settings import Settings

if TYPE_CHECKING:
    from engine.gguf_info import GGUFInfo

PINNED_LLAMA_CPP = "0.3.36"


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


def demo_model_path() -> Path:
    """Where `make demo` (scripts/demo.py) writes its test model: in the cache directory, so
    that every installation of qcn-lsp finds it."""
    return Path(Settings().cache.dir) / "models" / "tiny.gguf"


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
    findings.append(Finding(*_check_memory(info, settings)))
    if load:
        findings.append(_try_load(info.path, settings.model.context_length))
    return findings


def _check_memory(info: GGUFInfo, settings: Settings) -> tuple[bool, str, str]:
    from qcn_lsp.doctor_memory import MemoryNeed, available_ram, free_vram, memory_fit

    need = MemoryNeed(
        weights=info.size_bytes,
        kv_per_token=info.kv_bytes_per_token or 0,
        context_length=settings.model.context_length,
        recurrent=info.recurrent_state_bytes or 0,
        checkpoints=settings.engine.checkpoint_memory_mb * 1024 * 1024 if info.hybrid else 0,
        layers=info.block_count or 0,
    )
    vram = free_vram() if _gpu_offload() else None
    return memory_fit(need, available_ram(), vram, settings.model.gpu_layers)


def _gpu_offload() -> bool:
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:  # a broken build: _check_llama_cpp says so
        return False


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
    *,
    backend_url: str | None = None,
    backend_model: str | None = None,
    api_key_env: str = "",
) -> int:
    defaults = Settings()
    model = model or (Path(defaults.model.path) if defaults.model.path else None)
    cache_dir = cache_dir or Path(defaults.cache.dir)
    if backend_url is not None:
        from qcn_lsp.doctor_remote import check_remote

        # backend.kind = openai: the endpoint serves the model, no local GGUF is needed.
        checks = check_remote(backend_url, backend_model or defaults.backend.model, api_key_env)
        served = [Finding(*check) for check in checks]
    else:
        served = _check_model(model, load, defaults)
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
