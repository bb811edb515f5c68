"""The process audit (qcn_lsp.audit): the server writes nothing into the workspace and, with
the local backend, opens no network connection; what it did is in `qcn.status` `audit`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from lsprotocol import types

from tests.lsp.helpers import inline_params, lsp_session, open_file, server_env, status, until_ready

SOURCE = "def area(width, height):\n    return width * height\n\n\nvalue = "


def test_writes_into_the_workspace_are_refused_the_cache_is_exempt(tmp_path: Path) -> None:
    # In a child process: an audit hook lasts as long as its process.
    workspace, cache = tmp_path / "workspace", tmp_path / "workspace" / ".cache"
    cache.mkdir(parents=True)
    (workspace / "kept.py").write_text("x = 1\n")
    script = textwrap.dedent(
        f"""
        import json, os, sqlite3
        from pathlib import Path
        from qcn_lsp.audit import ProcessAudit
        audit = ProcessAudit()
        audit.protect([Path({str(workspace)!r})], [Path({str(cache)!r})])
        audit.install()
        ws = Path({str(workspace)!r})
        outcomes = {{}}
        for name, attempt in [
            ("open", lambda: open(ws / "new.py", "w")),
            ("append", lambda: open(ws / "kept.py", "a")),
            ("rename", lambda: os.rename(ws / "kept.py", ws / "moved.py")),
            ("remove", lambda: os.remove(ws / "kept.py")),
            ("mkdir", lambda: os.mkdir(ws / "sub")),
            ("sqlite", lambda: sqlite3.connect(ws / "db.sqlite")),
            ("cache", lambda: open(ws / ".cache" / "entry", "w").close()),
            ("read", lambda: open(ws / "kept.py").read()),
        ]:
            try:
                attempt()
                outcomes[name] = "done"
            except PermissionError:
                outcomes[name] = "refused"
        print(json.dumps({{"outcomes": outcomes, "report": audit.report()}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=server_env(), check=True
    )
    result = __import__("json").loads(done.stdout)
    outcomes = result["outcomes"]
    refused = ("open", "append", "rename", "remove", "mkdir", "sqlite")
    assert {name: outcomes[name] for name in refused} == dict.fromkeys(refused, "refused")
    assert outcomes["cache"] == "done" and outcomes["read"] == "done"
    assert len(result["report"]["refusedWrites"]) == len(refused)
    assert (workspace / "kept.py").read_text() == "x = 1\n"
    assert not (workspace / "new.py").exists() and not (workspace / "db.sqlite").exists()


async def test_the_local_backend_opens_no_connection(tiny_model: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "shapes.py").write_text(SOURCE)
    options = {
        "model": {"path": str(tiny_model), "contextLength": 4096},
        "completion": {"maxTokens": 4, "debounceMs": 0, "timeoutMs": 120_000},
        "cache": {"dir": str(tmp_path / "cache")},
    }
    async with lsp_session(workspace=project, initialization_options=options) as (client, _):
        uri = open_file(client, project / "shapes.py")
        await until_ready(client)
        answer = await client.text_document_inline_completion_async(
            inline_params(uri, types.Position(line=4, character=8))
        )
        assert isinstance(answer, types.InlineCompletionList)
        audit = (await status(client))["audit"]
    assert audit["installed"] is True
    assert audit["network"] == [], audit
    assert audit["refusedWrites"] == [], audit
