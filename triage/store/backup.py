"""A consistent copy of a live database and its attachment store, taken while it is written.

The database is copied with SQLite's online backup API in one step: one read transaction,
so the copy is the database as of one commit, whatever the daemon writes meanwhile (it goes
on writing into the WAL; nothing waits on the copy). The attachment store is copied after
it: its files are named by their hash and never change once renamed into place, so every
file a copied row names is there already, and a file newer than the copy is harmless. The
copy is then checked (`PRAGMA integrity_check`, the rows named) before it is called good.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from triage.errors import TriageError
from triage.store import files as file_store


class BackupError(TriageError):
    """A copy that could not be made or did not check out; the message names the fix."""


@dataclass(frozen=True, slots=True)
class Copied:
    db: Path
    files: Path | None
    tickets: int
    messages: int
    attachments: int  # files in the copied attachment store
    integrity: str  # "ok", or SQLite's first complaint


def take(db: Path, dest: Path) -> Copied:
    """Copy `db` and `<db>.files` into the new folder `dest` (owner-only); checked."""
    db = Path(db)
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(dest, "not empty", "give a new folder for each backup")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = dest / db.name
    source = sqlite3.connect(f"file:{db.resolve()}?mode=ro", uri=True, timeout=15.0)
    fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)  # owner-only first
    os.close(fd)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)  # every page in one step: one snapshot
        copy.execute("PRAGMA journal_mode=DELETE")  # one file, nothing beside it
    except sqlite3.Error as exc:
        raise BackupError(
            db, f"cannot be copied ({exc})", "check the disk and run it again"
        ) from None
    finally:
        source.close()
        copy.close()
    kept = db.with_name(db.name + ".files")
    files_copy = None
    if kept.is_dir():
        files_copy = dest / kept.name
        shutil.copytree(kept, files_copy, ignore=_in_flight, copy_function=shutil.copy2)
    return check(target)


def check(db: Path) -> Copied:
    """What a copy (or a restored database) holds, and whether SQLite finds it whole."""
    conn = sqlite3.connect(f"file:{Path(db).resolve()}?mode=ro", uri=True)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        tickets = conn.execute("SELECT COUNT(*) FROM tickets").fetchone()[0]
        messages = conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        hashes = [r[0] for r in conn.execute("SELECT DISTINCT sha256 FROM attachments")]
    finally:
        conn.close()
    kept = Path(db).with_name(Path(db).name + ".files")
    missing = [h for h in hashes if h and not file_store.path_for(kept, h).is_file()]
    if missing:
        integrity = f"{len(missing)} attachment(s) named by rows are missing from {kept}"
    count = sum(1 for p in kept.rglob("*") if p.is_file()) if kept.is_dir() else 0
    return Copied(db, kept if kept.is_dir() else None, tickets, messages, count, integrity)


def _in_flight(folder: str, names: list[str]) -> set[str]:
    """A file being written (`.<hash>.<pid>.tmp`) is left out: renamed, it is whole."""
    return {n for n in names if n.startswith(".") and n.endswith(".tmp")}
