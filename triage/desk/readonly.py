"""Opening the database to read only: the desk never writes, and never takes the write lock."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def connect(db: Path) -> sqlite3.Connection:
    """A read-only connection (`mode=ro`, `query_only`). FileNotFoundError when there is no
    database at `db` (SQLite would otherwise report only "unable to open database file")."""
    path = Path(db)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no database here; fix: pass the daemon's database (--db, or [store] db)"
        )
    conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=5.0)
    conn.execute("PRAGMA query_only=1")
    return conn
