"""Real VS Code: code-server 4.100.3 (VS Code 1.100.3) in headless chromium, driven with
puppeteer-core through the `.vsix` of editors/vscode, against this checkout's qcn-lsp and the
tiny test model. Set up with editors/vscode/scripts/setup-e2e.sh; without it the test is
skipped, unless QCN_REQUIRE_EDITORS=1 (CI), which makes a missing tool a failure.

What a failure leaves in .cache/vscode-e2e/results/last/: result.json (the driver's steps),
failure.png, driver.log, qcn-lsp.log (the server's log), extension.log (the extension's and
vscode-languageclient's output channel), code-server.log, chromium.log.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.editors.tools import REQUIRE_ENV, SERVER
from tests.lsp.helpers import REPO_ROOT

EXTENSION = REPO_ROOT / "editors" / "vscode"
CACHE = Path(os.environ.get("QCN_E2E_CACHE") or REPO_ROOT / ".cache" / "vscode-e2e")
CODE_SERVER = CACHE / "code-server-4.100.3" / "node_modules" / ".bin" / "code-server"
VSIX = EXTENSION / "qcn-lsp.vsix"
DRIVER = EXTENSION / "out" / "e2e" / "run.js"
PUPPETEER = EXTENSION / "node_modules" / "puppeteer-core"
RESULTS = CACHE / "results" / "last"
SETUP = "editors/vscode/scripts/setup-e2e.sh"

CALC = (
    "import math\n\n\n"
    "def area(radius):\n"
    "    return math.pi * radius * radius\n\n\n"
    "def perimeter(width, height):\n"
    "    return 2 * (width + height)\n\n\n"
    "print(area(2), perimeter(3, 4))\n"
)
USE = "from calc import area\n\nprint(area(1))\n"
# Lines typed at the end of calc.py until ghost text shows (a random model sometimes answers
# nothing at a spot). They end in a space or an operator: no popup of word suggestions.
ATTEMPTS = ["total = ", "scale = 2 * ", "label = ", "result = total + ", "if total > "]
# Extension log lines for completions (src/inline.ts): the text the server answered.
COMPLETION_LOG = re.compile(
    r'\] completion v\d+ \d+:\d+: (".*") \((\d+) streamed updates, (\d+) ms\)$'
)


def _missing_tools() -> list[str]:
    missing = [name for name in ("node", "chromium") if shutil.which(name) is None]
    missing += [
        str(path.relative_to(REPO_ROOT))
        for path in (CODE_SERVER, VSIX, DRIVER, PUPPETEER, SERVER)
        if not path.exists()
    ]
    if VSIX.exists():
        sources = [
            *EXTENSION.glob("src/*.ts"),
            *EXTENSION.glob("e2e/*.ts"),
            EXTENSION / "package.json",
        ]
        newest = max(path.stat().st_mtime for path in sources)
        if VSIX.stat().st_mtime < newest or (DRIVER.exists() and DRIVER.stat().st_mtime < newest):
            missing.append("a .vsix built from the current sources")
    return missing


@pytest.fixture
def tools() -> None:
    missing = _missing_tools()
    if missing:
        message = f"real VS Code test needs {', '.join(missing)}: run {SETUP}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{message}; {REQUIRE_ENV}=1 requires it")
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _process(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A child in its own process group, stopped (group and all) on exit."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
                try:
                    process.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue


def _wait_for_url(url: str, process: subprocess.Popen[bytes], seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"{process.args[0]} exited ({process.returncode}): {log.read_text()[-2000:]}"
            )
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
            return
        time.sleep(0.25)
    pytest.fail(f"{url} did not answer within {seconds:.0f} s; see {log}")


def _collect_logs(user_data: Path) -> None:
    for log in user_data.glob("logs/*/exthost*/qcn-lsp.qcn-lsp/qcn-lsp.log"):
        shutil.copy(log, RESULTS / "extension.log")


def _logged_completions() -> list[tuple[str, int, int]]:
    log = RESULTS / "extension.log"
    found = []
    for line in log.read_text().splitlines() if log.exists() else []:
        if m := COMPLETION_LOG.search(line):
            found.append((json.loads(m.group(1)), int(m.group(2)), int(m.group(3))))
    return found


def _no_whitespace(text: str) -> str:
    return re.sub(r"\s", "", text)


def _rest_is_typed_ahead(result: dict[str, Any]) -> bool | None:
    """Whether the ghost text after Ctrl+Right was the first answer's remainder (the server
    answered from the suggestion being typed along) rather than a new model text."""
    ghost, accept = result.get("ghost"), result.get("accept")
    if not ghost or not accept or not accept.get("rest"):
        return None
    word = accept["afterWord"][len(accept["before"]) :]
    return bool(accept["rest"] == ghost["answer"][len(word) :])


def _evidence(result: dict[str, Any]) -> dict[str, Any]:
    """Numbers for the report on how today's server behaves under VS Code."""
    server_log = (RESULTS / "qcn-lsp.log").read_text() if (RESULTS / "qcn-lsp.log").exists() else ""
    extension_log = (
        (RESULTS / "extension.log").read_text() if (RESULTS / "extension.log").exists() else ""
    )
    ghost = result.get("ghost") or {}
    events = ghost.get("events", [])
    shown = [e for e in events if e["text"].strip()]
    blank_gaps = [
        round(b["ms"] - a["ms"])
        for a, b in itertools.pairwise(events)
        if not a["text"].strip() and shown and shown[0]["ms"] < a["ms"]
    ]
    return {
        "model_runs": len(re.findall(r"completion file://\S+ in \d+ ms", server_log)),
        "keystrokes": sum(len(line) for line in ATTEMPTS[: ghost.get("attempt", 0)]),
        "first_ghost_ms": round(shown[0]["ms"] - ghost["typedAt"]) if shown else None,
        "ghost_states": len({e["text"] for e in shown}),
        "blank_gaps_ms": blank_gaps,
        "control_characters_removed": extension_log.count("had control characters"),
        "cancelled_errors_32800": extension_log.count("-32800") + server_log.count("-32800"),
        "server_errors": len(re.findall(r" ERROR ", server_log)),
        "rest_from_typed_ahead": _rest_is_typed_ahead(result),
        "code_action": (result.get("codeAction") or {}).get("text"),
        "refactor": (result.get("refactor") or {}).get("text"),
        "completions": [(text[:60], updates, ms) for text, updates, ms in _logged_completions()],
    }


@pytest.mark.timeout(900)
def test_vscode_ghost_text_accept_code_action_and_refactor(tools: None, tmp_path: Path) -> None:
    timings: dict[str, float] = {}
    started = time.monotonic()
    shutil.rmtree(RESULTS, ignore_errors=True)
    RESULTS.mkdir(parents=True)

    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "calc.py").write_text(CALC)
    (workspace / "use.py").write_text(USE)
    model = tmp_path / "tiny.gguf"
    subprocess.run(
        [str(SERVER), "make-test-model", str(model), "--preset", "tiny"],
        check=True,
        capture_output=True,
        timeout=120,
    )

    home = tmp_path / "home"
    user_data = tmp_path / "user-data"
    extensions = tmp_path / "extensions"
    (user_data / "User").mkdir(parents=True)
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
    }
    env.pop("QCN_MODEL", None)
    settings = {
        "qcn.serverPath": str(SERVER),
        "qcn.serverArgs": ["--log-level", "INFO", "--log-file", str(RESULTS / "qcn-lsp.log")],
        "qcn.model.path": str(model),
        "qcn.edits.maxTokens": 64,
        "qcn.cache.dir": str(tmp_path / "qcn-cache"),
        "workbench.startupEditor": "none",
        "security.workspace.trust.enabled": False,
        "telemetry.telemetryLevel": "off",
        "update.mode": "none",
        "extensions.autoCheckUpdates": False,
        "extensions.autoUpdate": False,
        "workbench.tips.enabled": False,
        "git.enabled": False,
        # The web build's default is afterDelay; desktop VS Code's (and this test's) is off.
        "files.autoSave": "off",
    }
    # Extra VS Code settings for an experiment, e.g. '{"qcn.popupCompletions": true}'.
    settings.update(json.loads(os.environ.get("QCN_VSCODE_SETTINGS") or "{}"))
    (user_data / "User" / "settings.json").write_text(json.dumps(settings, indent=2))

    subprocess.run(
        [
            str(CODE_SERVER),
            "--install-extension",
            str(VSIX),
            "--extensions-dir",
            str(extensions),
            "--user-data-dir",
            str(user_data),
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    timings["setup_s"] = time.monotonic() - started

    port, debug_port = _free_port(), _free_port()
    config_file = tmp_path / "code-server.yaml"
    config_file.write_text(f"bind-addr: 127.0.0.1:{port}\nauth: none\ncert: false\n")
    code_server_log, chromium_log = RESULTS / "code-server.log", RESULTS / "chromium.log"
    code_server = [
        str(CODE_SERVER),
        "--config",
        str(config_file),
        "--user-data-dir",
        str(user_data),
        "--extensions-dir",
        str(extensions),
        "--disable-telemetry",
        "--disable-update-check",
        "--disable-workspace-trust",
    ]
    chromium = [
        "chromium",
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--remote-debugging-address=127.0.0.1",
        f"--remote-debugging-port={debug_port}",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "about:blank",
    ]
    driver_config = {
        "browserURL": f"http://127.0.0.1:{debug_port}",
        "userData": str(user_data),
        "workbenchURL": f"http://127.0.0.1:{port}/?folder={workspace}",
        "workspace": str(workspace),
        "file": "calc.py",
        "results": str(RESULTS),
        "attempts": ATTEMPTS,
        "actionLine": 5,
        "refactorAt": "4:5",
        "refactorInstruction": "rename area to disk_area and update its callers",
    }
    (tmp_path / "driver.json").write_text(json.dumps(driver_config))
    result: dict[str, Any] = {}
    try:
        with (
            _process(code_server, env, code_server_log) as server_process,
            _process(chromium, env, chromium_log) as browser_process,
        ):
            _wait_for_url(f"http://127.0.0.1:{port}/healthz", server_process, 60, code_server_log)
            _wait_for_url(
                f"http://127.0.0.1:{debug_port}/json/version", browser_process, 60, chromium_log
            )
            timings["started_s"] = time.monotonic() - started
            with (RESULTS / "driver.log").open("wb") as out:
                driver = subprocess.run(
                    ["node", str(DRIVER), str(tmp_path / "driver.json")],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=600,
                    check=False,
                )
            timings["driver_s"] = time.monotonic() - started - timings["started_s"]
    finally:
        _collect_logs(user_data)
        if (RESULTS / "result.json").exists():
            result = json.loads((RESULTS / "result.json").read_text())
        timings["total_s"] = time.monotonic() - started
        summary = {"timings": {k: round(v, 1) for k, v in timings.items()}, **_evidence(result)}
        (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
        print(json.dumps(summary, indent=2, ensure_ascii=False))

    where = f"see {RESULTS.relative_to(REPO_ROOT)}/"
    assert result.get("ok"), (
        f"the VS Code driver failed (exit {driver.returncode}): {result.get('error')}; "
        f"steps {[(s['name'], s['ok']) for s in result.get('steps', [])]}; {where}"
    )

    # Ghost text came from the server and grew while the model wrote it; Ctrl+Right put its
    # first word in the buffer, Tab the rest the ghost text then showed.
    ghost, accept = result["ghost"], result["accept"]
    answered = [text for text, _updates, _ms in _logged_completions()]
    assert ghost["answer"] in answered, where
    assert _no_whitespace(ghost["shown"]) == _no_whitespace(ghost["answer"]), where
    states = {event["text"] for event in ghost["events"] if event["text"].strip()}
    assert len(states) >= 2, f"the ghost text never grew while streaming: {states}; {where}"
    before, after_word, after = accept["before"], accept["afterWord"], accept["after"]
    assert after_word.startswith(before), f"Ctrl+Right changed more than the cursor's spot; {where}"
    word = after_word[len(before) :]
    assert word.strip(), f"Ctrl+Right accepted nothing; {where}"
    assert ghost["answer"].startswith(word), f"{word!r} is not where {ghost['answer']!r} starts"
    if accept["rest"]:
        assert accept["rest"] in answered, where
        assert after == after_word + accept["rest"], f"Tab did not insert the rest; {where}"

    # The code action and qcn.refactor either edited or said why not.
    action = result["codeAction"]
    assert "Qwen: rewrite selection" in action["chosen"], action["menu"]
    if action["kind"] == "edit":
        assert action["after"] != action["before"]
    else:
        assert "rewrite selection" in action["text"] or "qcn-lsp:" in action["text"], action
    refactor = result["refactor"]
    assert "`area`" in refactor["prompt"], refactor["prompt"]
    if refactor["kind"] == "message":
        assert re.search(r"refactor area|qcn-lsp: ", refactor["text"]), refactor
