"""The server's log on stderr (what editors keep in their LSP log): WARNING unless the user
asks for more, with `--log-level` or the `log.level` setting, which wins."""

from __future__ import annotations

import subprocess
from typing import Any

from tests.lsp.helpers import RawLspProcess


def _stderr_of_a_session(*args: str, options: Any = None) -> str:
    server = RawLspProcess(*args, stderr=subprocess.PIPE)
    try:
        server.initialize(options)
        # Answered once the initialization options are applied.
        server.request("workspace/executeCommand", {"command": "qcn.status", "arguments": []})
    finally:
        assert server.close() == 0
    assert server.proc.stderr is not None
    return server.proc.stderr.read().decode()


def test_the_default_log_has_no_info_lines() -> None:
    log = _stderr_of_a_session()  # no flag at all
    assert " INFO " not in log and " DEBUG " not in log
    assert "WARNING" in log  # the missing model is worth a line


def test_the_log_level_setting_gives_more_and_wins_over_the_flag() -> None:
    more = _stderr_of_a_session(options={"log": {"level": "INFO"}})
    assert "INFO qcn_lsp.server: settings changed: log.level" in more
    quiet = _stderr_of_a_session("--log-level", "INFO", options={"log.level": "WARNING"})
    assert "settings changed" not in quiet
    assert "INFO qcn_lsp.server: settings changed" in _stderr_of_a_session(
        "--log-level", "info", options={"completion": {"maxTokens": 8}}
    )
