"""The editor's workspace as qcn-lsp sees it: folder roots, files for the model, sandboxed edits
and how they are sent to the editor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path
from pygls.workspace import Workspace

from qcn_lsp.edits import EditPlan, EditSupport, OpenDocument, WorkspaceFiles
from qcn_lsp.sandbox import sandboxed_edit
from qcn_lsp.wire import LSP_CONVERTER


def workspace_roots(workspace: Workspace) -> list[Path]:
    """The workspace folders' local paths; the root URI for clients that send no folders."""
    uris = [folder.uri for folder in workspace.folders.values()]
    if not uris and workspace.root_uri:
        uris = [workspace.root_uri]
    return [Path(path) for uri in uris if (path := to_fs_path(uri))]


def workspace_files(ls: LanguageServer, single_file: Path | None = None) -> WorkspaceFiles:
    """The workspace folders' files, open documents as the editor has them; with no folder
    open, `single_file`'s directory."""
    roots = workspace_roots(ls.workspace)
    if not roots and single_file is not None:
        roots = [single_file.parent]
    open_docs = {
        Path(path).resolve(): doc
        for uri, doc in ls.workspace.text_documents.items()
        if (path := to_fs_path(uri)) is not None
    }

    def open_document(path: Path) -> OpenDocument | None:
        doc = open_docs.get(path)
        return OpenDocument(doc.source, doc.version) if doc else None

    return WorkspaceFiles(roots, open_document)


def workspace_edit_for(
    ls: LanguageServer, files: WorkspaceFiles, plan: EditPlan, label: str
) -> types.WorkspaceEdit:
    """The plan as a WorkspaceEdit in the client's shape, once the sandbox's checks hold."""
    return sandboxed_edit(
        files,
        plan,
        support=EditSupport.of(ls.client_capabilities),
        label=label,
        codec=ls.workspace.position_codec,
    )


async def apply_edit(
    ls: LanguageServer, edit: types.WorkspaceEdit, label: str, names: list[str], note: str | None
) -> dict[str, Any]:
    """Send `edit` with workspace/applyEdit; the command's result says what became of it."""
    outcome: dict[str, Any] = {"applied": False, "cancelled": False, "files": names}
    workspace = ls.client_capabilities.workspace
    if not (workspace and workspace.apply_edit):
        # The edit still goes back, for a client that applies command results itself.
        outcome["reason"] = "this editor does not accept workspace/applyEdit"
        outcome["edit"] = LSP_CONVERTER.unstructure(edit)
        return outcome
    result = await ls.workspace_apply_edit_async(
        types.ApplyWorkspaceEditParams(edit=edit, label=f"qcn: {label[:80]}")
    )
    outcome["applied"] = bool(result and result.applied)
    outcome["reason"] = (result.failure_reason if result else None) or note
    return outcome
