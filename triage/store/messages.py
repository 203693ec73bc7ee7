"""Stored messages as the daemon asks about them after a batch.

Functions take the Store and values and return values, so another backend implements
the same functions.
"""

from __future__ import annotations

from triage.store.sqlite import Store


def action_of(store: Store, message_key: str | None) -> str | None:
    """The action stored for the message with `message_key` (`ticket`, `filtered` ...), or
    None when no message has that key."""
    row = store.conn.execute(
        "SELECT action FROM messages WHERE message_key = ?", (message_key,)
    ).fetchone()
    return row[0] if row else None
