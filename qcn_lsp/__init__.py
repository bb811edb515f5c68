"""qcn-lsp: a language server that brings Qwen3-Coder-Next into everyday editors."""

__version__ = "0.1.0"
