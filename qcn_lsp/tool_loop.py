"""The tool-call loop of model edits: one conversation on the background lane, read-only tools
answered from the workspace and the symbol graph, edit calls collected (never applied here).

Every edit conversation runs on the engine's background lane: the interactive lane's state
(the repository context and the file at the cursor) stays as completions left it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.backend import Backend, Generation
from engine.errors import EngineError
from engine.formats import chat_prompt
from engine.params import GenerationParams
from engine.segments import Prompt
from qcn_lsp.edit_tools import EDIT_TOOLS, MAX_PROMPT_FILE_CHARS, SYSTEM_PROMPT, tool_calls
from qcn_lsp.edits import (
    EDIT_TOOL_NAMES,
    EditRejected,
    ProposedChange,
    WorkspaceFiles,
    change_from_tool_call,
)
from qcn_lsp.errors import RequestFailed

if TYPE_CHECKING:
    from context.graph import ReferenceLocation, SymbolLocation
    from context.index import RepoIndex
    from qcn_lsp.server import QcnServer

# How long an edit request waits for the model / index to become ready before answering with
# the service's "still loading" error.
SERVICE_WAIT_S = 5.0
# Symbol graph answers shown to the model per tool call.
MAX_TOOL_ANSWER_ITEMS = 50


def _chat_prompt(backend: Backend, messages: Sequence[Mapping[str, str]]) -> Prompt:
    # The model's own chat template when its GGUF carries one (real models do).
    return chat_prompt(messages, EDIT_TOOLS, chat_template=backend.info().chat_template)


@dataclass
class ModelRun:
    """One model conversation on the background lane; `cancel()` stops the generation in
    flight and every later turn."""

    backend: Backend
    params: GenerationParams
    key: str
    current: Generation | None = None
    cancelled: bool = False

    async def reply(self, messages: Sequence[Mapping[str, str]]) -> str:
        if self.cancelled:
            raise asyncio.CancelledError
        try:
            self.current = self.backend.stream(
                _chat_prompt(self.backend, messages), self.params, key=self.key, lane="background"
            )
            return await self.current.text()
        except asyncio.CancelledError:
            # $/cancelRequest cancels this task; the engine's thread needs telling too.
            if self.current is not None:
                self.current.cancel()
            raise
        except EngineError as exc:
            raise RequestFailed(f"qcn-lsp: {exc}") from exc
        finally:
            self.current = None

    def cancel(self) -> None:
        self.cancelled = True
        if self.current is not None:
            self.current.cancel()


async def start_run(ls: QcnServer, key: str) -> ModelRun:
    """A conversation with the loaded model under the `edits` settings; RequestFailed while
    there is none."""
    backend = await ls.services.backend_ready(SERVICE_WAIT_S)
    params = GenerationParams(max_tokens=ls.settings.edits.max_tokens, temperature=0.0)
    return ModelRun(backend, params, key)


def file_prompt(instruction: str, display_path: str, text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": f"{instruction}\n\nFile {display_path}:\n```\n"
            f"{text[:MAX_PROMPT_FILE_CHARS]}\n```",
        },
    ]


async def propose_changes(
    run: ModelRun,
    files: WorkspaceFiles,
    messages: list[dict[str, str]],
    *,
    index: RepoIndex | None,
    max_rounds: int,
) -> list[ProposedChange]:
    """Model -> tool calls -> tool results -> model, at most `max_rounds` times.

    Edit calls are collected; read-only calls are answered from the workspace (read_file
    records what the model saw, for the staleness check later) and the symbol graph.
    """
    changes: list[ProposedChange] = []
    for _ in range(max_rounds):
        answer = await run.reply(messages)
        results: list[str] = []
        for name, arguments in tool_calls(answer):
            if name in EDIT_TOOL_NAMES:
                changes.append(change_from_tool_call(name, arguments))
                continue
            results.append(answer_tool(name, arguments, files, index))
        if not results:
            break
        messages.append({"role": "assistant", "content": answer})
        messages.append(
            {
                "role": "user",
                "content": "\n".join(f"<tool_response>\n{r}\n</tool_response>" for r in results),
            }
        )
    return changes


def answer_tool(
    name: str, arguments: Mapping[str, Any], files: WorkspaceFiles, index: RepoIndex | None
) -> str:
    """The answer to one read-only tool call, errors included (the model reads them)."""
    try:
        if name == "read_file":
            return files.read(str(arguments.get("path", ""))).text[:MAX_PROMPT_FILE_CHARS]
        symbol = str(arguments.get("name", ""))
        if name not in ("find_symbol", "find_references"):
            return f"error: unknown tool {name}"
        if index is None:
            return "error: the workspace index is not ready"
        with index.reading() as graph:
            if name == "find_symbol":
                return _listing([_definition_line(item) for item in graph.definitions(symbol)])
            return _listing([_reference_line(item) for item in graph.references(symbol)])
    except EditRejected as exc:
        return f"error: {exc}"


def _definition_line(item: SymbolLocation) -> str:
    definition = item.definition
    return f"{item.path}:{definition.start_line + 1} {definition.name} ({definition.kind})"


def _reference_line(item: ReferenceLocation) -> str:
    reference = item.reference
    return f"{item.path}:{reference.line + 1} {reference.name} ({reference.kind})"


def _listing(lines: list[str]) -> str:
    """Symbol graph answers for the model: one `path:line name (kind)` per item."""
    return "\n".join(lines[:MAX_TOOL_ANSWER_ITEMS]) or "(none)"
