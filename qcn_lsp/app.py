"""The composition point: builds the one server and registers every feature on it.

Features never import each other; what two of them share (the completer) is built here and
handed to both.
"""

from __future__ import annotations

from qcn_lsp.completer import Completer
from qcn_lsp.features import (
    code_actions,
    configuration,
    documents,
    edit_commands,
    inline_completion,
    popup_completion,
    status,
)
from qcn_lsp.server import QcnServer


def create_server() -> QcnServer:
    server = QcnServer()
    configuration.register(server)
    status.register(server)
    documents.register(server)
    completer = Completer(server, server.services)
    popup_completion.register(server, completer)
    inline_completion.register(server, completer)
    code_actions.register(server)
    edit_commands.register(server)
    return server
