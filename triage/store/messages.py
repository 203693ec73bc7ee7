"""Stored messages as the daemon asks about them after a batch.

Functions take the Store and values and return values, so another backend implements
the same functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from triage.store.sqlite import Store

# Messages up to this size keep their bytes in the database (`message_bytes`); larger ones
# in the content-addressed file store beside it (triage/store/files.py), written by the
# parsing worker. A row costs far less than a file for the usual message (a few kB), but a
# large one (mail with attachments: their base64 besides) went through the pipe to the one
# process that writes, and into SQLite's overflow pages, its log and its checkpoint: at
# 256 KiB, replay was 10 % slower than at 16 KiB (bench/README.md).
KEEP_IN_DB = 16 * 1024


def action_of(store: Store, message_key: str | None) -> str | None:
    """The action stored for the message with `message_key` (`ticket`, `filtered` ...), or
    None when no message has that key."""
    row = store.conn.execute(
        "SELECT action FROM messages WHERE message_key = ?", (message_key,)
    ).fetchone()
    return row[0] if row else None


def keep_bytes(store: Store, sha256: str, raw: bytes) -> None:
    """Keep a ticket's message's bytes (once per content), in the caller's transaction."""
    store.conn.execute(
        "INSERT OR IGNORE INTO message_bytes (sha256, raw) VALUES (?, ?)", (sha256, raw)
    )


def kept_bytes(store: Store, sha256: str) -> bytes | None:
    """The bytes kept for the message whose content hashes to `sha256`, wherever they are:
    the database, the file store, or the quarantine and review folders."""
    from triage.store import files

    row = store.conn.execute("SELECT raw FROM message_bytes WHERE sha256 = ?", (sha256,)).fetchone()
    if row is not None:
        return bytes(row[0])
    raw = files.read(store.files, sha256)
    if raw is not None:
        return raw
    for folder in ("quarantine", "review"):
        kept = store.kept(folder, sha256)
        if kept is not None:
            return kept.read_bytes()
    return None
