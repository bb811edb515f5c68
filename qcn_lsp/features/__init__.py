"""LSP features, one module each, registered by `qcn_lsp.app.create_server`.

A feature module imports no other feature module: what features share lives in the modules
of `qcn_lsp/` or is handed to `register` by the composition point.
"""
