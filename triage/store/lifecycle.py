"""A ticket's life as rows: the ticket whole, its thread, events and attachments, and the
columns a change of state, assignee or priority writes.

Functions take the Store and values and return values, in the caller's transaction:
triage/service/lifecycle.py writes a change, its event and its sink deliveries under one
write lock. The rules (which move is allowed, what it does to the clock) are pure, in
triage/core/lifecycle.py.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from triage import instants
from triage.store import deliveries, records

if TYPE_CHECKING:
    from triage.store.sqlite import Store

# The columns migration 7 adds to `tickets` (triage/store/migrations.py).
COLUMNS = ("assignee", "closed_at", "paused_at")

EXCERPT = 400  # characters of each message's text `ticket show` prints


def _iso(value: datetime | None) -> str | None:
    return instants.iso(value) if value else None


def ticket(store: Store, number: str) -> dict | None:
    """The `tickets` row numbered `number`, every column, or None."""
    rows = list(store.db.query("SELECT * FROM tickets WHERE number = ?", (number,)))
    return rows[0] if rows else None


def set_status(
    store: Store,
    ticket_id: int,
    status: str,
    closed_at: datetime | None,
    paused_at: datetime | None,
    due: datetime | None,
) -> None:
    """The ticket's state, when it was closed, when its clock paused, and its deadline."""
    store.conn.execute(
        "UPDATE tickets SET status = ?, closed_at = ?, paused_at = ?, response_due = ?"
        " WHERE id = ?",
        (status, _iso(closed_at), _iso(paused_at), _iso(due), ticket_id),
    )


def set_assignee(store: Store, ticket_id: int, assignee: str | None) -> None:
    store.conn.execute("UPDATE tickets SET assignee = ? WHERE id = ?", (assignee, ticket_id))


def set_priority(
    store: Store,
    ticket_id: int,
    priority: str,
    level: int | None,
    target: str,
    due: datetime | None,
) -> None:
    """The ticket's priority label, project level, and the target and deadline for them."""
    store.conn.execute(
        "UPDATE tickets SET priority = ?, level = ?, target = ?, response_due = ? WHERE id = ?",
        (priority, level, target, _iso(due), ticket_id),
    )


def event(store: Store, ticket_id: int, kind: str, at: datetime, detail: dict) -> None:
    """One event about the ticket (no message) in the audit trail."""
    records.event(store, ticket_id, None, kind, instants.iso(at), detail)


def queue_ticket_event(
    store: Store,
    sinks: Sequence[deliveries.Subscriber],
    kind: str,
    ticket_id: int,
    at: datetime,
    reasons: Sequence[str],
    previous_priority: str | None = None,
    change: dict[str, object] | None = None,
) -> None:
    """A ticket event's deliveries (the ticket as it stands now), in the caller's transaction,
    for the sinks subscribed to `kind`."""
    if not any(kind in s.subscription.events for s in sinks):
        return
    event = deliveries.ticket_event(
        store.conn,
        kind,
        ticket_id,
        at,
        action="change",
        reasons=reasons,
        previous_priority=previous_priority,
        change=change,
    )
    if event is not None:
        deliveries.queue(store.conn, sinks, event, at)


def thread(store: Store, ticket_id: int) -> list[dict]:
    """The ticket's messages in the order they arrived: sender, date, subject, an excerpt."""
    rows = store.db.query(
        "SELECT message_key, message_id, from_addr, date, received_at, subject, action, body"
        " FROM messages WHERE ticket_id = ? ORDER BY received_at, id",
        (ticket_id,),
    )
    out = []
    for r in rows:
        body = r.pop("body") or ""
        r["excerpt"] = body[:EXCERPT] + ("…" if len(body) > EXCERPT else "")
        out.append(r)
    return out


def events(store: Store, ticket_id: int) -> list[dict]:
    """The ticket's events, oldest first, their detail parsed."""
    out = []
    for r in store.db.query(
        "SELECT kind, at, message_key, detail FROM events WHERE ticket_id = ? ORDER BY at, id",
        (ticket_id,),
    ):
        with contextlib.suppress(ValueError):  # a hand-written row: shown as it is
            r["detail"] = json.loads(r["detail"] or "{}")
        out.append(r)
    return out


def attachments(store: Store, ticket_id: int) -> list[dict]:
    """Attachments of the ticket's messages: name, type, size, hash."""
    return list(
        store.db.query(
            "SELECT a.message_key, a.filename, a.content_type, a.size, a.sha256"
            " FROM attachments a JOIN messages m ON m.message_key = a.message_key"
            " WHERE m.ticket_id = ? ORDER BY a.id",
            (ticket_id,),
        )
    )


def opening_reasons(store: Store, message_key: str | None) -> list[str]:
    """The decision trace of the message that opened the ticket (why its priority)."""
    row = store.conn.execute(
        "SELECT decision FROM messages WHERE message_key = ?", (message_key,)
    ).fetchone()
    if row is None or not row[0]:
        return []
    try:
        return list(json.loads(row[0]).get("reasons") or [])
    except ValueError:
        return []


def message(store: Store, key: str) -> dict | None:
    """The stored message with `key` (or whose Message-ID is `key`): its row, its ticket's
    number, and its decision trace parsed."""
    rows = list(
        store.db.query(
            "SELECT m.message_key, m.message_id, m.sha256, m.source, m.from_addr, m.subject,"
            " m.received_at, m.action, m.reason, m.decision, t.number AS ticket"
            " FROM messages m LEFT JOIN tickets t ON t.id = m.ticket_id"
            " WHERE m.message_key = ? OR m.message_id = ? ORDER BY m.id LIMIT 1",
            (key, key),
        )
    )
    if not rows:
        return None
    row = rows[0]
    row["reasons"] = _reasons(row.pop("decision"))
    return row


def traces(store: Store, ticket_id: int) -> list[dict]:
    """Each message of the ticket with the decision trace stored when it was decided."""
    rows = store.db.query(
        "SELECT message_key, from_addr, subject, received_at, action, decision FROM messages"
        " WHERE ticket_id = ? ORDER BY received_at, id",
        (ticket_id,),
    )
    out = []
    for r in rows:
        r["reasons"] = _reasons(r.pop("decision"))
        out.append(r)
    return out


def _reasons(decision: str | None) -> list[str]:
    try:
        return list(json.loads(decision or "{}").get("reasons") or [])
    except (ValueError, AttributeError):
        return []
