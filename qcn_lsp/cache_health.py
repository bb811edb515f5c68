"""Whether a cache directory can hold a cache, checked before the engine or the index opens it.

An unwritable directory turns the cache off, with a message that says so and what to set,
instead of failing the model load or the index build. A corrupt cache database (not SQLite,
truncated, failing SQLite's quick check) is moved aside and started afresh: caches only ever
hold what can be recomputed. Entries that are bad inside a sound database are the caches' own
business (engine.persist, context.index drop them when read).
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

DATABASE = "cache.db"  # diskcache's file


def prepare_cache(directory: Path) -> tuple[Path | None, str | None]:
    """(directory, note) when usable, the note saying what was repaired; (None, why) when
    not."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        return None, (
            f"cache directory {directory} is not writable ({exc.strerror or exc}): caching is "
            "off; set cache.dir to a writable folder"
        )
    database = directory / DATABASE
    if not database.exists() or _sound(database):
        return directory, None
    aside = directory.with_name(f"{directory.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        directory.rename(aside)
        directory.mkdir(parents=True)
    except OSError as exc:
        return (
            None,
            f"cache {database} is corrupt and cannot be moved aside ({exc}): caching is off",
        )
    return directory, f"cache {database} was corrupt: moved to {aside}, starting afresh"


def _sound(database: Path) -> bool:
    try:
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
        try:
            return connection.execute("PRAGMA quick_check").fetchone() == ("ok",)
        finally:
            connection.close()
    except sqlite3.OperationalError as exc:
        return "locked" in str(exc)  # another server has it open: sound, just busy
    except sqlite3.DatabaseError:
        return False
