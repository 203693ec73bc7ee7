"""Ticket rows made by hand, for tests that queue outbox rows straight into a store.

The outbox's `ticket_id` is a foreign key: a row can only name a ticket that is there. A
test that queues acknowledgements without replaying mail first makes their tickets here.
"""

from __future__ import annotations

import sqlite3


def make(conn: sqlite3.Connection, *ids: int) -> None:
    """Tickets `ids` (T-000001 ...), open, with only the columns that must be filled."""
    conn.executemany(
        "INSERT OR IGNORE INTO tickets (id, number, status, requester, created_at)"
        " VALUES (?, ?, 'open', 'someone@acme.example', '2026-03-10T14:30:00Z')",
        [(n, f"T-{n:06d}") for n in ids],
    )
