"""`qcn-lsp pull` against a local HTTP server on loopback serving a generated file: full
downloads, Range resumes after a dropped connection, a server without Range, a wrong
checksum, no disk space, and the published repository's split files."""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from qcn_lsp import pull
from qcn_lsp.cli import main

SIZE = 3 * 1024 * 1024 + 123  # several progress lines and chunks


@dataclass
class Scenario:
    """What the loopback server does; `requests` records every (method, path, Range)."""

    files: dict[str, bytes] = field(default_factory=dict)
    ranges: bool = True
    drops: int = 0  # how many GETs are cut off halfway through
    listing: list[dict[str, Any]] | None = None
    linked: dict[str, str] = field(default_factory=dict)  # path -> the sha256 a HEAD names
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)


def handler_for(scenario: Scenario) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            path = self.path.split("?")[0]
            scenario.requests.append((self.command, path, self.headers.get("Range")))
            if path.startswith("/api/models/") and scenario.listing is not None:
                payload = json.dumps(scenario.listing).encode()
                self._head(200, len(payload), {"Content-Type": "application/json"})
                self.wfile.write(payload if body else b"")
                return
            content = scenario.files.get(path)
            if content is None:
                self._head(404, 0)
                return
            if not body and path in scenario.linked:
                # How Hugging Face's resolve URLs publish an LFS file's sha256 and size.
                linked = {"X-Linked-Etag": f'"{scenario.linked[path]}"'}
                self._head(200, len(content), {**linked, "X-Linked-Size": str(len(content))})
                return
            start = 0
            wanted = self.headers.get("Range")
            if wanted and scenario.ranges:
                start = int(wanted.removeprefix("bytes=").split("-")[0])
                if start >= len(content):
                    self._head(416, 0, {"Content-Range": f"bytes */{len(content)}"})
                    return
                extra = {"Content-Range": f"bytes {start}-{len(content) - 1}/{len(content)}"}
                self._head(206, len(content) - start, extra)
            else:
                extra = {"Accept-Ranges": "bytes"} if scenario.ranges else {}
                self._head(200, len(content), extra)
            if not body:
                return
            rest = content[start:]
            if scenario.drops > 0:
                scenario.drops -= 1
                self.wfile.write(rest[: len(rest) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)  # the connection drops halfway
                return
            self.wfile.write(rest)

        def _head(self, status: int, length: int, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(length))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()

    return Handler


@pytest.fixture
def scenario() -> Iterator[tuple[Scenario, str]]:
    state = Scenario()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pull, "BACKOFF_S", 0.0)


def blob(seed: int, size: int = SIZE) -> bytes:
    return hashlib.shake_256(f"model-{seed}".encode()).digest(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run(*args: str | None, **options: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    url = args[0] if args else None
    status = pull.run_pull(url, stdout=out, stderr=err, **options)
    return status, out.getvalue(), err.getvalue()


def test_a_url_with_its_sha256_downloads_and_prints_the_setting(
    scenario: tuple[Scenario, str], tmp_path: Path
) -> None:
    state, base = scenario
    data = blob(1)
    state.files["/m/model.gguf"] = data
    status, out, err = run(f"{base}/m/model.gguf", sha256=sha(data), out=tmp_path)
    assert status == 0, err
    target = tmp_path / "model.gguf"
    assert target.read_bytes() == data
    assert f'"model.path": "{target}"' in out and f"export QCN_MODEL={target}" in out
    assert not list(tmp_path.glob(".*.partial"))
    # Not a terminal: plain progress lines with size, speed and ETA.
    lines = [line for line in err.splitlines() if "ETA" in line]
    assert len(lines) >= 3 and "MiB/s" in lines[-1] and "100.0%" in lines[-1]
    # A second pull finds it verified and downloads nothing.
    before = len(state.requests)
    status, _, err = run(f"{base}/m/model.gguf", sha256=sha(data), out=tmp_path)
    assert status == 0 and "already downloaded and verified" in err
    assert [r for r in state.requests[before:] if r[0] == "GET"] == []


def test_a_connection_dropped_halfway_resumes_with_range(
    scenario: tuple[Scenario, str], tmp_path: Path
) -> None:
    state, base = scenario
    data = blob(2)
    state.files["/model.gguf"] = data
    state.drops = 2
    status, _, err = run(f"{base}/model.gguf", sha256=sha(data), out=tmp_path)
    assert status == 0, err
    assert (tmp_path / "model.gguf").read_bytes() == data
    gets = [r for r in state.requests if r[0] == "GET"]
    assert gets[0][2] is None
    half = len(data) // 2
    assert gets[1][2] == f"bytes={half}-"  # resumed where the connection dropped
    assert gets[2][2] == f"bytes={half + (len(data) - half) // 2}-"
    assert "connection lost" in err and "resuming at" in err


def test_an_interrupted_pull_resumes_on_the_next_run(
    scenario: tuple[Scenario, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, base = scenario
    data = blob(3)
    state.files["/model.gguf"] = data
    monkeypatch.setattr(pull, "RETRIES", 0)
    state.drops = 1
    status, _, err = run(f"{base}/model.gguf", sha256=sha(data), out=tmp_path)
    assert status == 1 and "run the same command again to resume" in err
    assert not (tmp_path / "model.gguf").exists()
    partial = tmp_path / ".model.gguf.partial"
    assert partial.stat().st_size == len(data) // 2
    status, _, err = run(f"{base}/model.gguf", sha256=sha(data), out=tmp_path)
    assert status == 0, err
    assert state.requests[-1][2] == f"bytes={len(data) // 2}-"
    assert (tmp_path / "model.gguf").read_bytes() == data


def test_a_server_without_range_restarts_from_zero(
    scenario: tuple[Scenario, str], tmp_path: Path
) -> None:
    state, base = scenario
    data = blob(4)
    state.files["/model.gguf"] = data
    state.ranges = False
    state.drops = 1
    status, _, err = run(f"{base}/model.gguf", sha256=sha(data), out=tmp_path)
    assert status == 0, err
    assert "starting again from zero" in err
    assert (tmp_path / "model.gguf").read_bytes() == data


def test_a_wrong_checksum_is_refused_and_nothing_is_installed(
    scenario: tuple[Scenario, str], tmp_path: Path
) -> None:
    state, base = scenario
    state.files["/model.gguf"] = blob(5)
    status, out, err = run(f"{base}/model.gguf", sha256=sha(b"something else"), out=tmp_path)
    assert status == 1 and out == ""
    assert "failed verification" in err and "nothing was installed" in err
    assert "Run the same command again" in err
    assert list(tmp_path.iterdir()) == []  # no target, no partial left to resume from


def test_no_disk_space_is_said_before_downloading(
    scenario: tuple[Scenario, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, base = scenario
    state.files["/model.gguf"] = blob(6)
    real = pull.shutil.disk_usage

    def tiny_disk(path: Any) -> Any:
        usage = real(path)
        return type(usage)(usage.total, usage.total - 1024, 1024)

    monkeypatch.setattr(pull.shutil, "disk_usage", tiny_disk)
    status, _, err = run(f"{base}/model.gguf", out=tmp_path)
    assert status == 1 and "not enough disk space" in err and "--out" in err
    assert [r for r in state.requests if r[0] == "GET"] == []
    assert list(tmp_path.iterdir()) == []


def test_without_a_published_checksum_the_size_is_checked_and_the_user_told(
    scenario: tuple[Scenario, str], tmp_path: Path
) -> None:
    state, base = scenario
    data = blob(7)
    state.files["/model.gguf"] = data
    status, _, err = run(f"{base}/model.gguf", out=tmp_path / "named.gguf")
    assert status == 0
    assert (tmp_path / "named.gguf").read_bytes() == data
    assert f"its sha256 is {sha(data)}" in err


def listing(parts: dict[str, bytes], wrong: str | None = None) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = [{"type": "file", "path": "README.md", "size": 10}]
    for path, data in parts.items():
        oid = sha(b"x") if path == wrong else sha(data)
        entries.append(
            {
                "type": "file",
                "path": path,
                "size": len(data),
                "lfs": {"oid": oid, "size": len(data)},
            }
        )
    return entries


def test_quant_fetches_every_split_part_of_the_published_repository(
    scenario: tuple[Scenario, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, base = scenario
    repo = "Qwen/Qwen3-Coder-Next-GGUF"
    parts = {
        f"Q4_K_M/Qwen3-Coder-Next-Q4_K_M-0000{k}-of-00003.gguf": blob(10 + k, 400_000)
        for k in (2, 1, 3)
    }
    other = {"Qwen3-Coder-Next-Q8_0.gguf": blob(20, 1000)}
    state.listing = listing({**parts, **other})
    for path, data in {**parts, **other}.items():
        state.files[f"/{repo}/resolve/main/{path}"] = data
    monkeypatch.setenv("QCN_PULL_BASE_URL", base)  # the published hub, overridden
    status, out, err = run(quant="Q4_K_M", out=tmp_path)
    assert status == 0, err
    names = sorted(p.name for p in tmp_path.glob("*.gguf"))
    assert names == [f"Qwen3-Coder-Next-Q4_K_M-0000{k}-of-00003.gguf" for k in (1, 2, 3)]
    first = tmp_path / names[0]
    assert f"export QCN_MODEL={first}" in out  # llama.cpp opens the first part
    assert "no published sha256" not in err
    status, _, err = run(quant="Q5_K_M", out=tmp_path)
    assert status == 1 and "has no Q5_K_M GGUF" in err and "Q8_0" in err


def test_quant_refuses_a_part_that_does_not_match_the_published_sum(
    scenario: tuple[Scenario, str], tmp_path: Path
) -> None:
    state, base = scenario
    repo = "someone/model-GGUF"
    parts = {f"m-Q4_K_M-0000{k}-of-00002.gguf": blob(30 + k, 200_000) for k in (1, 2)}
    state.listing = listing(parts, wrong="m-Q4_K_M-00002-of-00002.gguf")
    for path, data in parts.items():
        state.files[f"/{repo}/resolve/main/{path}"] = data
    status, _, err = run(quant="q4_k_m", repo=repo, base=base, out=tmp_path)
    assert status == 1 and "m-Q4_K_M-00002-of-00002.gguf failed verification" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "m-Q4_K_M-00001-of-00002.gguf",
        "m-Q4_K_M-00001-of-00002.gguf.sha256",
    ]


def test_the_command_line(
    scenario: tuple[Scenario, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state, base = scenario
    data = blob(40, 5000)
    state.files["/x.gguf"] = data
    assert main(["pull"]) == 2
    assert main(["pull", f"{base}/x.gguf", "--sha256", "abc"]) == 2
    os.environ.pop("QCN_PULL_BASE_URL", None)
    assert main(["pull", f"{base}/x.gguf", "--sha256", sha(data), "--out", str(tmp_path)]) == 0
    assert f"QCN_MODEL={tmp_path / 'x.gguf'}" in capsys.readouterr().out


def test_a_url_download_checks_the_sha256_its_host_publishes(
    scenario: tuple[Scenario, str], tmp_path: Path
) -> None:
    state, base = scenario
    state.files["/resolve/model.gguf"] = blob(50)
    state.linked["/resolve/model.gguf"] = sha(b"the published file")
    status, _, err = run(f"{base}/resolve/model.gguf", out=tmp_path)
    assert status == 1 and "the published one is" in err
    state.linked["/resolve/model.gguf"] = sha(blob(50))
    status, _, err = run(f"{base}/resolve/model.gguf", out=tmp_path)
    assert status == 0 and "no published sha256" not in err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_bar_redraws_one_line() -> None:
    terminal = Terminal()
    bar = pull.ProgressBar(terminal, "model.gguf", 10 << 20, 0)
    bar._last_draw = -1.0  # draw at once
    bar.update(5 << 20)
    bar.finish()
    drawn = terminal.getvalue()
    assert drawn.startswith("\r") and "\x1b[K" in drawn and drawn.endswith("\n")
    assert "50.0%" in drawn and "5.0 MiB / 10.0 MiB" in drawn and "ETA" in drawn
