"""`qcn-lsp pull`: download a GGUF model into the cache, resumably, and use it only when
verified.

Why here (qcn_lsp/) and not in engine/: it is a user-facing command — terminal progress,
the cache directory and the `model.path` / `QCN_MODEL` line it ends with are the language
server's settings — while the engine only ever reads a path or talks to an endpoint.

Each file streams into a hidden `.NAME.partial` next to its target: the free disk space is
checked first, an interrupted download resumes with an HTTP Range request (a server that
ignores Range restarts it from zero), the size and sha256 (from --sha256 or the repository's
published metadata) are checked at the end, and only then is the partial file renamed onto the
target, atomically. A bad download is deleted, never renamed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import unquote, urlsplit

import httpx

from qcn_lsp.doctor_memory import human_bytes as human
from qcn_lsp.model_repo import PullError, RemoteFile, base_url, quant_files, repo_name
from qcn_lsp.settings import Settings

CHUNK_BYTES = 1 << 20
RETRIES = 5  # reconnections per file after a dropped connection
BACKOFF_S = 1.0
DISK_MARGIN_BYTES = 64 << 20
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass
class Target:
    file: RemoteFile
    path: Path

    @property
    def partial(self) -> Path:
        return self.path.with_name(f".{self.path.name}.partial")

    @property
    def checksum_file(self) -> Path:
        """Written once the file is verified: a later pull need not hash it again."""
        return self.path.with_name(f"{self.path.name}.sha256")

    def have(self) -> int:
        return self.partial.stat().st_size if self.partial.exists() else 0


def models_dir() -> Path:
    return Path(Settings().cache.dir) / "models"


class ProgressBar:
    """Size, speed and ETA on stderr: one redrawn line on a terminal, plain lines otherwise."""

    def __init__(self, out: TextIO, name: str, total: int | None, start: int) -> None:
        self.out, self.name, self.total = out, name, total
        self.done = start
        self._start_bytes, self._started = start, time.monotonic()
        self._tty = out.isatty()
        self._last_draw = 0.0
        self._last_step = -1

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self._tty and now - self._last_draw >= 0.2:
            self._last_draw = now
            self.out.write(f"\r{self.line()}\x1b[K")
            self.out.flush()
        elif not self._tty and self.total:
            step = int(10 * self.done / self.total)  # a line every 10 %
            if step != self._last_step:
                self._last_step = step
                self.out.write(self.line() + "\n")
                self.out.flush()

    def line(self) -> str:
        elapsed = max(1e-6, time.monotonic() - self._started)
        speed = (self.done - self._start_bytes) / elapsed
        if not self.total:
            return f"{self.name}: {human(self.done)} at {human(speed)}/s"
        share = min(1.0, self.done / self.total)
        eta = (self.total - self.done) / speed if speed > 0 else float("inf")
        bar = "#" * int(24 * share) + "." * (24 - int(24 * share))
        return (
            f"{self.name} [{bar}] {100 * share:5.1f}% {human(self.done)} / {human(self.total)}"
            f"  {human(speed)}/s  ETA {_duration(eta)}"
        )

    def note(self, message: str) -> None:
        self.out.write(("\n" if self._tty else "") + message + "\n")
        self.out.flush()

    def finish(self) -> None:
        if self._tty:
            self.out.write(f"\r{self.line()}\x1b[K\n")
            self.out.flush()


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


# -- the command ----------------------------------------------------------------------------


def run_pull(
    url: str | None,
    *,
    quant: str | None = None,
    repo: str | None = None,
    base: str | None = None,
    revision: str = "main",
    sha256: str | None = None,
    out: Path | None = None,
    stderr: TextIO | None = None,
    stdout: TextIO | None = None,
) -> int:
    """`qcn-lsp pull`; returns the exit status (0: the model is there and verified)."""
    stderr = stderr or sys.stderr
    stdout = stdout or sys.stdout
    if sha256 is not None and not SHA256_HEX.fullmatch(sha256.lower()):
        stderr.write(f"qcn-lsp pull: --sha256 must be 64 hex digits, got {sha256!r}\n")
        return 2
    with httpx.Client(
        follow_redirects=True, timeout=httpx.Timeout(60.0, connect=15.0), trust_env=True
    ) as client:
        try:
            if quant is not None:
                files = quant_files(client, base_url(base), repo_name(repo), quant, revision)
            else:
                assert url is not None
                files = [_url_file(client, url, sha256)]
            targets = _place(files, out)
            paths = pull_files(client, targets, stderr)
        except PullError as exc:
            stderr.write(f"qcn-lsp pull: {exc}\n")
            return 1
        except KeyboardInterrupt:
            stderr.write(
                "\nqcn-lsp pull: interrupted; run the same command again to resume where it "
                "stopped\n"
            )
            return 130
    first = paths[0].resolve()
    stdout.write(
        f"\nModel ready: {first}\n"
        f'Set it in your editor\'s qcn-lsp settings:  "model.path": "{first}"\n'
        f"or in the environment:  export QCN_MODEL={first}\n"
    )
    return 0


def _url_file(client: httpx.Client, url: str, sha256: str | None) -> RemoteFile:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PullError(f"{url!r} is not an http(s) URL")
    name = Path(unquote(parts.path)).name
    if not name:
        raise PullError(f"{url} does not name a file; pass --out FILE")
    size, published = None, None
    try:
        head = client.head(url)
    except httpx.HTTPError:
        head = None  # some servers refuse HEAD: the GET will tell
    if head is not None and head.is_success:
        headers = [*(r.headers for r in head.history), head.headers]
        # Hugging Face's resolve URLs name the LFS object's size and sha256 before redirecting.
        linked_size = next((h["x-linked-size"] for h in headers if "x-linked-size" in h), None)
        length = linked_size or head.headers.get("content-length")
        size = int(length) if length and length.isdigit() else None
        for h in headers:
            etag = h.get("x-linked-etag", "").strip('"').lower()
            if SHA256_HEX.fullmatch(etag):
                published = etag
    elif head is not None and head.status_code == 404:
        raise PullError(f"{url} does not exist (HTTP 404)")
    return RemoteFile(url=url, name=name, size=size, sha256=(sha256 or published or None))


def _place(files: Sequence[RemoteFile], out: Path | None) -> list[Target]:
    """Where each file goes: all parts of a split model in one directory."""
    if out is not None and not out.is_dir() and out.suffix == ".gguf":
        if len(files) > 1:
            raise PullError(
                f"the model comes in {len(files)} parts, which llama.cpp finds next to each "
                "other: give --out a directory"
            )
        return [Target(files[0], out)]
    directory = out if out is not None else models_dir()
    return [Target(f, directory / f.name) for f in files]


def pull_files(client: httpx.Client, targets: Sequence[Target], stderr: TextIO) -> list[Path]:
    """Download every target not already there and verified; their paths."""
    todo = [t for t in targets if not _already_there(t, stderr)]
    for target in todo:
        target.path.parent.mkdir(parents=True, exist_ok=True)
    _check_space(todo)
    for target in todo:
        _download(client, target, stderr)
    return [t.path for t in targets]


def _already_there(target: Target, stderr: TextIO) -> bool:
    file = target.file
    if not target.path.is_file():
        return False
    size_ok = file.size is None or target.path.stat().st_size == file.size
    recorded = target.checksum_file.read_text().split()[:1] if target.checksum_file.exists() else []
    sum_ok = file.sha256 is None or recorded == [file.sha256]
    if size_ok and sum_ok:
        stderr.write(f"{target.path.name}: already downloaded and verified\n")
        return True
    return False


def _check_space(todo: Sequence[Target]) -> None:
    by_device: dict[Path, int] = {}
    for target in todo:
        if target.file.size is not None:
            need = max(0, target.file.size - target.have())
            by_device[target.path.parent] = by_device.get(target.path.parent, 0) + need
    for directory, need in by_device.items():
        free = shutil.disk_usage(directory).free
        if need + DISK_MARGIN_BYTES > free:
            raise PullError(
                f"not enough disk space in {directory}: the download needs {human(need)} "
                f"more, {human(free)} are free; free some space or choose another place "
                "with --out"
            )


def _download(client: httpx.Client, target: Target, stderr: TextIO) -> None:
    file = target.file
    attempt = 0
    while True:
        have = target.have()
        if file.size is not None and have > file.size:
            target.partial.unlink()  # longer than the file: not a prefix of it
            have = 0
        try:
            digest = _fetch(client, target, have, stderr)
            break
        except httpx.TransportError as exc:
            attempt += 1
            if attempt > RETRIES:
                raise PullError(
                    f"{file.name}: the connection failed {attempt} times ({exc}); "
                    f"{human(target.have())} are kept: run the same command again to resume"
                ) from None
            stderr.write(
                f"\n{file.name}: connection lost ({type(exc).__name__}); resuming at "
                f"{human(target.have())} (retry {attempt} of {RETRIES})\n"
            )
            time.sleep(BACKOFF_S * attempt)
    _verify(target, digest)
    if file.sha256 is None:
        stderr.write(
            f"{file.name}: no published sha256 to check against: only its size was verified "
            f"(its sha256 is {digest}; pass --sha256 to check the content)\n"
        )
    os.replace(target.partial, target.path)
    target.checksum_file.write_text(f"{digest}  {target.path.name}\n")


def _fetch(client: httpx.Client, target: Target, have: int, stderr: TextIO) -> str:
    """Stream the rest of the file into the partial; the sha256 of the whole partial."""
    file = target.file
    headers = {"Range": f"bytes={have}-"} if have else {}
    with client.stream("GET", file.url, headers=headers) as response:
        if response.status_code == 416 and have and have == file.size:
            return _hash_file(target.partial)  # complete already: verify it
        if response.status_code == 206 and have:
            start = _range_start(response.headers.get("content-range", ""))
            if start != have:
                raise PullError(f"{file.name}: the server resumed at byte {start}, not {have}")
            mode = "ab"
        elif response.is_success:
            if have:
                stderr.write(
                    f"{file.name}: the server does not resume downloads (no Range support); "
                    "starting again from zero\n"
                )
            have, mode = 0, "wb"
        elif response.status_code == 404:
            raise PullError(f"{file.url} does not exist (HTTP 404)")
        else:
            raise PullError(f"{file.url} answered HTTP {response.status_code}")
        total = file.size or _total_size(response, have)
        hasher = hashlib.sha256()
        if mode == "ab":
            _hash_into(hasher, target.partial)
        progress = ProgressBar(stderr, file.name, total, have)
        with target.partial.open(mode) as sink:
            for chunk in response.iter_bytes():  # as received: a drop loses nothing
                sink.write(chunk)
                hasher.update(chunk)
                progress.update(len(chunk))
        progress.finish()
    return hasher.hexdigest()


def _range_start(content_range: str) -> int | None:
    match = re.match(r"bytes (\d+)-", content_range)
    return int(match.group(1)) if match else None


def _total_size(response: httpx.Response, have: int) -> int | None:
    match = re.search(r"/(\d+)$", response.headers.get("content-range", ""))
    if match:
        return int(match.group(1))
    length = response.headers.get("content-length", "")
    return have + int(length) if length.isdigit() else None


def _hash_into(hasher: hashlib._Hash, path: Path) -> None:
    with path.open("rb") as source:
        while block := source.read(CHUNK_BYTES):
            hasher.update(block)


def _hash_file(path: Path) -> str:
    hasher = hashlib.sha256()
    _hash_into(hasher, path)
    return hasher.hexdigest()


def _verify(target: Target, digest: str) -> None:
    file = target.file
    size = target.partial.stat().st_size
    problem = None
    if file.size is not None and size != file.size:
        problem = f"it has {size} bytes, the published size is {file.size}"
    elif file.sha256 is not None and digest != file.sha256:
        problem = f"its sha256 is {digest}, the published one is {file.sha256}"
    if problem is None:
        return
    target.partial.unlink()
    raise PullError(
        f"{file.name} failed verification: {problem}. The download was deleted and nothing "
        "was installed. Run the same command again to download it afresh; if it fails again, "
        "the file on the server differs from its checksum: check the URL and --sha256"
    )
