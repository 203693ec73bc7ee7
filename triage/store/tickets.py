"""Tickets as SLA tracking reads them, and the first response it writes.

Each function takes the Store and values and returns `Ticket` values (the columns
tracking needs, instants parsed), so another backend implements the same functions.
They run in the caller's transaction: `triage/service/tracking.py` reads and writes
under one write lock.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from triage import instants
from triage.core.lifecycle import CLOSED, RESOLVED
from triage.core.sla.tracking import Ticket, instant

if TYPE_CHECKING:
    from triage.store.sqlite import Store


def _ticket(row: tuple) -> Ticket:
    """A row of the statements below -> Ticket. Each statement is written out whole (no SQL
    is assembled from pieces) and selects the same columns in this order."""
    created = instant(row[9])
    assert created is not None  # NOT NULL in the schema
    return Ticket(
        id=row[0],
        number=row[1],
        status=row[2],
        priority=row[3],
        level=row[4],
        policy=row[5],
        plan=row[6],
        timezone=row[7],
        due=instant(row[8]),
        created=created,
        responded=instant(row[10]),
        paused=instant(row[11]),
    )


def every(store: Store) -> list[Ticket]:
    """All tickets, oldest first (the response report counts them)."""
    rows = store.conn.execute(
        "SELECT id, number, status, priority, level, policy, plan, timezone, response_due,"
        " created_at, first_response_at, paused_at FROM tickets ORDER BY id"
    ).fetchall()
    return [_ticket(r) for r in rows]


def tracked(store: Store) -> list[Ticket]:
    """Unanswered tickets with a deadline, not resolved or closed, their clock not paused,
    oldest first: what warnings and breaches are about."""
    rows = store.conn.execute(
        "SELECT id, number, status, priority, level, policy, plan, timezone, response_due,"
        " created_at, first_response_at, paused_at FROM tickets"
        " WHERE first_response_at IS NULL AND response_due IS NOT NULL"
        " AND status NOT IN (?, ?) AND paused_at IS NULL ORDER BY id",
        (RESOLVED, CLOSED),
    ).fetchall()
    return [_ticket(r) for r in rows]


def by_number(store: Store, number: str) -> Ticket | None:
    """The ticket numbered `number` (e.g. T-000123), or None."""
    row = store.conn.execute(
        "SELECT id, number, status, priority, level, policy, plan, timezone, response_due,"
        " created_at, first_response_at, paused_at FROM tickets WHERE number = ?",
        (number,),
    ).fetchone()
    return _ticket(row) if row else None


def set_first_response(store: Store, ticket_id: int, at: datetime) -> bool:
    """Record the first response at `at`; a ticket already answered keeps its own (False)."""
    cur = store.conn.execute(
        "UPDATE tickets SET first_response_at = ? WHERE id = ? AND first_response_at IS NULL",
        (instants.iso(at), ticket_id),
    )
    return cur.rowcount == 1
