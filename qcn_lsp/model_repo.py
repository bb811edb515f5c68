"""Which files make up one quantization of the published Qwen3-Coder-Next GGUF repository,
with the sizes and sha256 sums the repository publishes (`qcn-lsp pull --quant`).

The repository is a Hugging Face model repository: its file list with Git LFS metadata comes
from `GET {base}/api/models/{repo}/tree/{revision}?recursive=true` (each LFS entry carries its
`lfs.oid`, the sha256 of the content, and `lfs.size`), and each file downloads from
`{base}/{repo}/resolve/{revision}/{path}`. A quantization split into parts
(`...-00001-of-00004.gguf`) is all of its parts, in order; llama.cpp opens the first and finds
the others next to it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_BASE_URL = "https://huggingface.co"
DEFAULT_REPO = "Qwen/Qwen3-Coder-Next-GGUF"
BASE_URL_ENV = "QCN_PULL_BASE_URL"
REPO_ENV = "QCN_PULL_REPO"
SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


class PullError(Exception):
    """A download that cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True)
class RemoteFile:
    url: str
    name: str  # the file name to save it under
    size: int | None  # bytes, when published
    sha256: str | None  # hex, when published


def base_url(flag: str | None) -> str:
    return (flag or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")


def repo_name(flag: str | None) -> str:
    return flag or os.environ.get(REPO_ENV) or DEFAULT_REPO


def quant_files(
    client: httpx.Client, base: str, repo: str, quant: str, revision: str = "main"
) -> list[RemoteFile]:
    """The file(s) of `quant` in `repo`, split parts in order; PullError when none or several
    quantizations match, or a split set is incomplete."""
    listing = f"{base}/api/models/{repo}/tree/{quote(revision, safe='')}"
    try:
        response = client.get(listing, params={"recursive": "true"})
    except httpx.HTTPError as exc:
        raise PullError(f"cannot list {repo} at {base} ({exc}); check the network") from None
    if response.status_code == 404:
        raise PullError(
            f"{base} has no repository {repo!r} (revision {revision}); set --repo or ${REPO_ENV}"
        )
    if not response.is_success:
        raise PullError(f"listing {repo} at {base} answered HTTP {response.status_code}")
    try:
        entries = response.json()
    except ValueError:
        raise PullError(f"{listing} did not answer with JSON; is {base} a model hub?") from None
    ggufs = [
        e
        for e in entries
        if isinstance(e, dict)
        and e.get("type") == "file"
        and str(e.get("path", "")).lower().endswith(".gguf")
    ]
    matching = [e for e in ggufs if _is_quant(str(e["path"]), quant)]
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in matching:
        groups.setdefault(SPLIT.sub(".gguf", str(entry["path"])), []).append(entry)
    if not groups:
        available = sorted({_quant_label(str(e["path"])) for e in ggufs})
        raise PullError(
            f"{repo} has no {quant} GGUF; it has: {', '.join(available) or 'no GGUF files'}"
        )
    if len(groups) > 1:
        raise PullError(
            f"several {quant} files in {repo}: {', '.join(sorted(groups))}; pass the URL of "
            "the one you want (qcn-lsp pull URL)"
        )
    [parts] = groups.values()
    parts.sort(key=lambda e: str(e["path"]))
    _check_split(parts)
    return [_remote_file(base, repo, revision, entry) for entry in parts]


def _is_quant(path: str, quant: str) -> bool:
    label = re.escape(quant)
    pattern = rf"(^|[-_./]){label}([-_./]|$)"
    return re.search(pattern, SPLIT.sub(".gguf", path), re.IGNORECASE) is not None


def _quant_label(path: str) -> str:
    stem = PurePosixPath(SPLIT.sub(".gguf", path)).stem
    return stem.rsplit("-", 1)[-1]


def _check_split(parts: list[dict[str, Any]]) -> None:
    numbers = [SPLIT.search(str(p["path"])) for p in parts]
    if not any(numbers):
        if len(parts) > 1:
            raise PullError(f"several files for one quantization: {[p['path'] for p in parts]}")
        return
    if not all(numbers):
        raise PullError("a quantization has both split and whole files; pass a URL instead")
    total = int(numbers[0].group(2)) if numbers[0] else 0
    have = sorted(int(m.group(1)) for m in numbers if m)
    if have != list(range(1, total + 1)):
        raise PullError(
            f"the repository lists parts {have} of {total} of {parts[0]['path']}: incomplete"
        )


def _remote_file(base: str, repo: str, revision: str, entry: dict[str, Any]) -> RemoteFile:
    path = str(entry["path"])
    lfs = entry.get("lfs")
    if not isinstance(lfs, dict):
        lfs = {}
    size = lfs.get("size", entry.get("size"))
    sha = lfs.get("oid") or lfs.get("sha256")
    return RemoteFile(
        url=f"{base}/{repo}/resolve/{quote(revision, safe='')}/{quote(path)}",
        name=PurePosixPath(path).name,
        size=size if isinstance(size, int) else None,
        sha256=str(sha).lower() if isinstance(sha, str) and len(sha) == 64 else None,
    )
