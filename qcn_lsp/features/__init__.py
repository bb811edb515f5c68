"""LSP features, one module each; `register_all` wires them onto the one server object."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qcn_lsp.server import QcnServer


def register_all(server: QcnServer) -> None:
    from qcn_lsp.features import (
        code_actions,
        completion,
        configuration,
        documents,
        inline_completion,
        refactor,
        status,
    )

    for feature in (
        configuration,
        status,
        documents,
        completion,
        inline_completion,
        code_actions,
        refactor,
    ):
        feature.register(server)
