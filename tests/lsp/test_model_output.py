"""Scripted model answers (qwen3_coder tool calls, fenced blocks) through the edit pipeline.

A scripted model stands in for the real one only here, where what is tested is how its
output is parsed, answered and turned into edits.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from pygls.workspace import PositionCodec

from context.index import RepoIndex
from engine.params import GenerationParams
from qcn_lsp import tool_loop
from qcn_lsp.edits import (
    EditRejected,
    EditSupport,
    FileCreate,
    FileEdit,
    WorkspaceFiles,
    plan_changes,
    to_workspace_edit,
)
from qcn_lsp.region_rewrite import Region, apply_region_answer
from qcn_lsp.tool_loop import ModelRun, answer_tool, file_prompt, propose_changes

POLY = Path(__file__).resolve().parents[1] / "fixtures" / "repos" / "poly"


def tool_call(function: str, **arguments: str) -> str:
    parameters = "".join(
        f"<parameter={key}>\n{value}\n</parameter>\n" for key, value in arguments.items()
    )
    return f"<tool_call>\n<function={function}>\n{parameters}</function>\n</tool_call>"


class ScriptedGeneration:
    def __init__(self, text: str) -> None:
        self._text = text
        self.cancelled = False

    async def text(self) -> str:
        return self._text

    def cancel(self) -> None:
        self.cancelled = True


class ScriptedBackend:
    """Answers with the next scripted text and records what each prompt contained."""

    def __init__(self, answers: Sequence[str | ScriptedGeneration]) -> None:
        self.answers = list(answers)
        self.conversations: list[list[Mapping[str, str]]] = []
        self.lanes: list[str] = []

    def stream(
        self, prompt: Any, params: GenerationParams, *, key: str | None = None, lane: str = ""
    ) -> ScriptedGeneration:
        self.conversations.append(prompt)
        self.lanes.append(lane)
        answer = self.answers.pop(0) if self.answers else "done"
        return answer if isinstance(answer, ScriptedGeneration) else ScriptedGeneration(answer)


@pytest.fixture(autouse=True)
def prompt_is_the_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    # The scripted model reads the conversation itself, not a rendered ChatML prompt.
    monkeypatch.setattr(
        tool_loop, "_chat_prompt", lambda _backend, messages: copy.deepcopy(list(messages))
    )


def run_for(backend: ScriptedBackend) -> ModelRun:
    return ModelRun(backend, GenerationParams(), key="test")  # type: ignore[arg-type]


def built_index(root: Path) -> RepoIndex:
    index = RepoIndex([root])
    index.build()
    return index


async def converse(root: Path, answers: Sequence[str], max_rounds: int = 4):
    backend = ScriptedBackend(answers)
    files = WorkspaceFiles([root], lambda path: None)
    # As qcn.editFiles does: the target file is read (and shown) before the model is asked.
    messages = file_prompt("rename add to plus", "pkg/a.py", files.read("pkg/a.py").text)
    index = built_index(root)
    changes = await propose_changes(
        run_for(backend), files, messages, index=index, max_rounds=max_rounds
    )
    return backend, files, changes


def test_symbol_tools_answer_with_lines_names_and_kinds() -> None:
    index = built_index(POLY)
    files = WorkspaceFiles([POLY], lambda path: None)

    def answer(tool: str, name: str) -> str:
        return answer_tool(tool, {"name": name}, files, index)

    assert answer("find_symbol", "make_user") == "py/app/models.py:13 make_user (function)"
    assert answer("find_references", "make_user") == (
        "py/app/service.py:1 make_user (import)\npy/app/service.py:9 make_user (call)"
    )
    assert answer("find_symbol", "Registry") == "py/app/service.py:4 Registry (class)"
    assert answer("find_symbol", "no_such_name") == "(none)"
    assert answer_tool("find_symbol", {"name": "x"}, files, None).startswith("error: ")


async def test_read_only_tools_are_answered_then_edits_collected(add_project: Path) -> None:
    backend, files, changes = await converse(
        add_project,
        [
            tool_call("find_references", name="add") + tool_call("read_file", path="pkg/b.py"),
            tool_call("edit_file", path="pkg/a.py", old_text="def add(", new_text="def plus(")
            + tool_call("edit_file", path="pkg/b.py", old_text="import add", new_text="import plus")
            + tool_call("edit_file", path="pkg/b.py", old_text="add(1", new_text="plus(1")
            + tool_call("create_file", path="pkg/c.py", content="from pkg.a import plus\n"),
        ],
    )
    assert backend.lanes == ["background", "background"]
    second_turn = backend.conversations[1]
    tool_results = second_turn[-1]["content"]
    assert (
        "<tool_response>\npkg/b.py:1 add (import)\npkg/b.py:3 add (call)\n</tool_response>"
        in tool_results
    )
    assert "print(add(1, 2))" in tool_results  # read_file's answer
    assert changes == [
        FileEdit("pkg/a.py", "def add(", "def plus("),
        FileEdit("pkg/b.py", "import add", "import plus"),
        FileEdit("pkg/b.py", "add(1", "plus(1"),
        FileCreate("pkg/c.py", "from pkg.a import plus\n"),
    ]
    plan = plan_changes(files, changes)
    edit = to_workspace_edit(
        files,
        plan,
        support=EditSupport(document_changes=True, create_files=True, annotations=True),
        label="rename",
        codec=PositionCodec(),
    )
    assert edit.change_annotations is not None and len(edit.change_annotations) == 3


async def test_rounds_are_bounded(add_project: Path) -> None:
    endless = [tool_call("read_file", path="pkg/a.py")] * 10
    backend, _, changes = await converse(add_project, endless, max_rounds=3)
    assert len(backend.conversations) == 3 and changes == []


async def test_malicious_tool_calls_never_become_edits(add_project: Path) -> None:
    (add_project / "escape").symlink_to(add_project.parent)
    answers = [
        tool_call("read_file", path="../../etc/passwd")
        + tool_call("read_file", path="/etc/passwd")
        + tool_call("read_file", path="escape/x"),
        tool_call("edit_file", path="../outside.py", old_text="a", new_text="b"),
    ]
    backend, files, changes = await converse(add_project, answers)
    results = backend.conversations[1][-1]["content"]
    assert results.count("outside the workspace") == 3
    with pytest.raises(EditRejected, match=r"\.\./outside\.py: outside the workspace"):
        plan_changes(files, changes)


async def test_wrong_tool_arguments_are_refused(add_project: Path) -> None:
    with pytest.raises(EditRejected, match="'old_text' missing"):
        await converse(add_project, [tool_call("edit_file", path="pkg/a.py", new_text="x")])


TEXT = "def f():\n    return 1\n\n\ndef g():\n    return 1\n"
REGION_G = Region(TEXT.index("def g"), len(TEXT))


def test_fenced_answer_replaces_the_region() -> None:
    answer = "Here you go:\n```python\ndef g():\n    return 2\n```\n"
    after = apply_region_answer(answer, TEXT, REGION_G, "m.py")
    assert after == "def f():\n    return 1\n\n\ndef g():\n    return 2\n"


def test_edit_call_matches_inside_the_region_only() -> None:
    # "return 1" occurs twice in the file but once in the region: the region's one is edited.
    answer = tool_call("edit_file", path="m.py", old_text="return 1", new_text="return 3")
    after = apply_region_answer(answer, TEXT, REGION_G, "m.py")
    assert after == "def f():\n    return 1\n\n\ndef g():\n    return 3\n"
    outside = tool_call("edit_file", path="m.py", old_text="def f", new_text="def h")
    with pytest.raises(EditRejected, match="does not match the region once"):
        apply_region_answer(outside, TEXT, REGION_G, "m.py")


def test_noise_is_refused() -> None:
    for noise in ["", "just words", "<tool_call>\n<function=edit_file>\n", "```unterminated"]:
        with pytest.raises(EditRejected):
            apply_region_answer(noise, TEXT, REGION_G, "m.py")


class EndlessGeneration(ScriptedGeneration):
    async def text(self) -> str:
        await asyncio.Event().wait()
        return ""


async def test_cancelling_the_request_or_the_run_stops_the_generation() -> None:
    for cancel_run in (False, True):
        generation = EndlessGeneration("")
        run = run_for(ScriptedBackend([generation]))
        task = asyncio.ensure_future(run.reply([{"role": "user", "content": "x"}]))
        await asyncio.sleep(0.01)
        if cancel_run:
            run.cancel()  # what window/workDoneProgress/cancel does
            assert generation.cancelled
        task.cancel()  # what $/cancelRequest does
        with pytest.raises(asyncio.CancelledError):
            await task
        assert generation.cancelled
    # A cancelled run starts no further model turn.
    with pytest.raises(asyncio.CancelledError):
        await run.reply([])
