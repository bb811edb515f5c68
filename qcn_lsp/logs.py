"""Where the log goes: stderr (and `--log-file`), at the level the user chose; stdout carries
the protocol and is never logged to.

Editors record everything a server writes to stderr (Neovim's `lsp.log` marks each line
`[ERROR]`, whatever its level), so the default is WARNING. The level comes from `--log-level`
until settings arrive; a `log.level` setting then wins, and `null` goes back to the flag's.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_LEVEL = "WARNING"
# Libraries that log at INFO what only a DEBUG log wants: pygls every message body, gguf every
# tensor it writes, httpx every request (the remote backend, pull).
_CHATTY = ("pygls", "gguf", "httpx")

_command_line_level = DEFAULT_LEVEL


def setup_logging(level: str | None, log_file: Path | None = None) -> None:
    """Log to stderr (and `log_file`) at `level`, the `--log-level` flag (None: the default).

    Raises OSError when the log file cannot be opened."""
    global _command_line_level
    _command_line_level = level or DEFAULT_LEVEL
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    use_level(None)


def use_level(setting: str | None) -> None:
    """Apply the `log.level` setting; None means the command line's level."""
    level = setting or _command_line_level
    logging.getLogger().setLevel(level)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
