"""The session store's SQLite file: its schema, and opening it.

Opened in WAL mode and checked (``quick_check``); the schema is created if missing and
migrated if older. A corrupt file is moved aside (``.corrupt-<time>``, its WAL and SHM
too) and an empty one started; one that cannot be written leaves the store in memory.
Either way one warning line says so.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from ..log import event
from .private import private_database, private_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    response_id TEXT PRIMARY KEY, session TEXT NOT NULL, agent TEXT NOT NULL,
    model TEXT NOT NULL, length INTEGER NOT NULL, history TEXT NOT NULL,
    context TEXT NOT NULL, parent TEXT, created REAL NOT NULL, last_used REAL NOT NULL,
    upstream TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS sessions (
    session TEXT NOT NULL, agent TEXT NOT NULL, model TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (session, agent, model)
);
CREATE TABLE IF NOT EXISTS session_config (session TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS recent_requests (
    upstream TEXT NOT NULL, conversation TEXT NOT NULL, data TEXT NOT NULL,
    at REAL NOT NULL, PRIMARY KEY (upstream, conversation)
);
CREATE TABLE IF NOT EXISTS responses (
    scope TEXT NOT NULL, response_id TEXT NOT NULL, parent TEXT, session TEXT NOT NULL,
    data TEXT NOT NULL, last_used REAL NOT NULL, PRIMARY KEY (scope, response_id)
);
"""


def open_database(path: Path, clock: Callable[[], float]) -> sqlite3.Connection | None:
    """``path`` opened (WAL, checked, schema current), private; a corrupt file is moved
    aside and a new one started; None when it cannot be used (the store keeps to memory)."""
    try:
        private_dir(path.parent)
        private_database(path)
    except OSError as exc:
        event("store.unavailable", level=30, path=str(path), error=str(exc),
              effect="sessions kept in memory only")
        return None
    for attempt in range(2):
        try:
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                    raise sqlite3.DatabaseError("quick_check failed")
                db.executescript(SCHEMA)
                _migrate(db)
                return db
            except BaseException:
                db.close()
                raise
        except sqlite3.DatabaseError as exc:
            if attempt or not path.exists() or _unwritable(exc):
                event("store.unavailable", level=30, path=str(path), error=str(exc),
                      effect="sessions kept in memory only")
                return None
            aside = path.with_name(f"{path.name}.corrupt-{int(clock())}")
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(path) + suffix)
                if p.exists():
                    p.rename(Path(str(aside) + suffix))
            event("store.corrupt", level=30, path=str(path), moved_to=str(aside),
                  error=str(exc), effect="starting with an empty session store")
    return None


def _migrate(db: sqlite3.Connection) -> None:
    """Columns added since the first schema (a store written by an older lmsd keeps
    working; its nodes belong to no upstream in particular)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(nodes)")}
    if "upstream" not in columns:
        db.execute("ALTER TABLE nodes ADD COLUMN upstream TEXT NOT NULL DEFAULT ''")


def _unwritable(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("readonly", "read-only", "unable to open", "permission"))
