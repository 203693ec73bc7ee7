"""Opening the database to read only: the desk never writes, and never takes the write lock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from triage.config.storage import Database


def connect(db: Path | Database):
    """A read-only connection (`mode=ro`, `query_only`), checked by reading the schema; on
    the PostgreSQL store (`[store] url`) one whose transactions are READ ONLY, taking the same
    SQL through store/dialect.py (store/desk/queries.py has a PostgreSQL form where needed).

    FileNotFoundError when there is no database at `db` (SQLite would otherwise report only
    "unable to open database file"); PermissionError when this user may read the file but
    not open it (see below).
    """
    if isinstance(db, Database):
        from triage.store.postgres import read_only

        return read_only(db)
    path = Path(db)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no database here; fix: pass the daemon's database (--db, or [store] db)"
        )
    conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=5.0)
    try:
        conn.execute("PRAGMA query_only=1")
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.OperationalError as exc:
        conn.close()
        if "readonly" not in str(exc) and "read-only" not in str(exc):
            raise
        # A WAL database is read through its -shm file. While the daemon runs, it keeps
        # -wal and -shm beside the database, and a reader in the triage group uses them;
        # when it is stopped they are gone, and a user who may not write the folder
        # cannot make them (SQLite: "attempt to write a readonly database").
        raise PermissionError(
            f"{path}: this user can read the file but cannot open it while the daemon is"
            f" stopped ({path.name}-shm is missing and only the daemon's user may create it);"
            " fix: start the daemon, or run this command as the daemon's user"
            " (docs/desk.md, 'Who can read')"
        ) from None
    return conn


def refuse_writes(conn) -> None:
    """No statement that writes runs on `conn` (Datasette's connections to the database)."""
    conn.execute("PRAGMA query_only=1")
