"""Sink deliveries: one row per (event, sink), written in the transaction of the change that
caused it, then claimed, sent and marked by the drainer (triage/sinks/drainer.py).

The only place the `deliveries` table is read or written. A row holds the event as JSON
(`Event.to_json`), so a resend carries exactly the body and the delivery id (`msg_…`) of the
first attempt. States: `pending` (due at `next_attempt_at`), `sending` (claimed by
`claimed_by` until `lease_until`), `sent`, `dead` (given up: kept with the receiver's last
answer for `triage outbox retry`), `dropped` (`triage outbox drop`), `replay` (queued by
`triage replay`: shown, never sent).

Instants are stored fixed-width (`2026-03-10T04:26:00.000000Z`) so that comparing them as
text orders them as instants.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from triage import instants
from triage.core.decision import Action, Decision
from triage.sinks.events import (
    MESSAGE_QUARANTINED,
    TICKET_APPENDED,
    TICKET_CREATED,
    TICKET_STATUS_CHANGED,
    Event,
    Subscription,
    delivery_id,
)

if TYPE_CHECKING:
    from triage.store.sqlite import Store

DDL = """
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    sink TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    ticket TEXT,
    event TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    claimed_by TEXT,
    lease_until TEXT,
    last_error TEXT,
    last_code INTEGER,
    remote TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT,
    UNIQUE (event_id, sink)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_sink ON deliveries (sink, status);
"""


class Subscriber(Protocol):
    """What queueing needs of a sink: its name and what it subscribes to (a SinkConfig)."""

    name: str
    subscription: Subscription


def stamp(value: datetime) -> str:
    """A fixed-width UTC instant: text order is time order."""
    return instants.utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_event_id() -> str:
    """A fresh event id (random: two databases replaying the same mail never share one)."""
    return "evt_" + secrets.token_hex(12)


# -- queueing, in the caller's transaction ------------------------------------------------


def queue(
    conn: sqlite3.Connection,
    sinks: Iterable[Subscriber],
    event: Event,
    at: datetime,
    status: str = "pending",
) -> int:
    """One row per sink subscribed to `event`; the number of rows written."""
    rows = [
        (
            s.name,
            event.id,
            event.type,
            delivery_id(event.id, s.name),
            event.ticket,
            event.to_json(),
            status,
            stamp(at),
            stamp(at),
        )
        for s in sinks
        if s.subscription.matches(event)
    ]
    if rows:
        conn.executemany(
            "INSERT OR IGNORE INTO deliveries (sink, event_id, event_type, delivery_id, ticket,"
            " event, status, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return len(rows)


def _wanted(sinks: Sequence[Subscriber], event_type: str) -> bool:
    return any(event_type in s.subscription.events for s in sinks)


def for_decision(
    conn: sqlite3.Connection,
    sinks: Sequence[Subscriber],
    d: Decision,
    ticket_id: int | None,
    at: datetime,
    status: str = "pending",
) -> int:
    """The deliveries a written decision causes: ticket.created, ticket.appended or
    message.quarantined. Called inside the message's savepoint."""
    if not sinks:
        return 0
    e = d.email
    if d.action == Action.TICKET and ticket_id is not None and _wanted(sinks, TICKET_CREATED):
        event = Event.for_ticket(
            TICKET_CREATED,
            new_event_id(),
            at,
            ticket=d.ticket or "",
            subject=e.subject if e else "",
            priority=d.priority,
            due=d.due,
            requester=d.requester or (e.from_addr if e else None),
            requester_name=(d.requester_name if d.requester else (e.from_name if e else "")) or "",
            contact=d.contact,
            company=d.company,
            queue=d.queue,
            vip=d.vip,
            action="ticket",
            reasons=d.reasons,
            message_id=d.message_id,
            text=(e.body or "") if e else "",
        )
        return queue(conn, sinks, event, at, status)
    if d.action == Action.APPEND and ticket_id is not None:
        written = 0
        if _wanted(sinks, TICKET_APPENDED):
            event = ticket_event(
                conn,
                TICKET_APPENDED,
                ticket_id,
                at,
                action="append",
                reasons=d.reasons,
                message_id=d.message_id,
                text=(e.body or "") if e else "",
            )
            written += queue(conn, sinks, event, at, status) if event else 0
        if d.reopened and _wanted(sinks, TICKET_STATUS_CHANGED):
            # the customer's reply moved it back to open: the same change `ticket status` makes
            moved = ticket_event(
                conn,
                TICKET_STATUS_CHANGED,
                ticket_id,
                at,
                action="append",
                reasons=d.reasons,
                message_id=d.message_id,
                text=(e.body or "") if e else "",
                change={
                    "status": "open",
                    "previous_status": d.reopened,
                    "by": e.from_addr if e else None,
                },
            )
            written += queue(conn, sinks, moved, at, status) if moved else 0
        return written
    if d.action == Action.QUARANTINED and _wanted(sinks, MESSAGE_QUARANTINED):
        event = Event.quarantined(
            new_event_id(),
            at,
            source=d.source,
            message_id=d.message_id,
            error=d.reasons[0] if d.reasons else (d.reason or "quarantined"),
        )
        return queue(conn, sinks, event, at, status)
    return 0


def ticket_event(
    conn: sqlite3.Connection,
    event_type: str,
    ticket_id: int,
    at: datetime,
    *,
    action: str = "ticket",
    reasons: Sequence[str] | None = None,
    message_id: str | None = None,
    text: str | None = None,
    sla: str | None = None,
    previous_priority: str | None = None,
    change: dict[str, object] | None = None,
) -> Event | None:
    """A ticket event built from the ticket's row as it stands in this transaction.

    `reasons`, `message_id` and `text` default to those of the message that opened it.
    None when there is no such ticket.
    """
    row = conn.execute(
        "SELECT t.number, t.subject, t.priority, t.response_due, t.requester, t.requester_name,"
        " t.contact, t.company, t.queue, t.vip, m.message_id, m.decision, m.body"
        " FROM tickets t LEFT JOIN messages m ON m.message_key = t.message_key WHERE t.id = ?",
        (ticket_id,),
    ).fetchone()
    if row is None:
        return None
    number, subject, priority, due, requester, name, contact, company, queue_name, vip = row[:10]
    first_id, decision, body = row[10:]
    if reasons is None:
        try:
            reasons = json.loads(decision or "{}").get("reasons") or []
        except ValueError:
            reasons = []
    return Event.for_ticket(
        event_type,
        new_event_id(),
        at,
        ticket=number,
        subject=subject or "",
        priority=priority,
        due=instants.stored(due) if due else None,
        requester=requester,
        requester_name=name or "",
        contact=contact,
        company=company,
        queue=queue_name,
        vip=bool(vip),
        action=action,
        reasons=reasons,
        message_id=message_id if message_id is not None else first_id,
        text=text if text is not None else (body or ""),
        previous_priority=previous_priority,
        sla=sla,
        change=change,
    )


# -- the drainer's side ---------------------------------------------------------------------


def waiting(store: Store) -> list[dict]:
    """Rows not yet sent (pending, being sent, dead), by sink then age."""
    return list(
        store.db.query(
            "SELECT id, sink, event_type AS event, ticket, delivery_id, status, attempts,"
            " last_code, last_error, next_attempt_at, created_at, remote FROM deliveries"
            " WHERE status IN ('pending', 'sending', 'dead') ORDER BY sink, id"
        )
    )


def retry(store: Store, row_id: int, at: datetime) -> bool:
    """A dead row queued again, its attempts counted from zero; False if no such dead row."""
    cur = store.conn.execute(
        "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?"
        " WHERE id = ? AND status = 'dead'",
        (stamp(at), row_id),
    )
    return cur.rowcount == 1


def drop(store: Store, row_id: int) -> bool:
    """A pending or dead row never sent: kept, marked `dropped`; False if there is none."""
    cur = store.conn.execute(
        "UPDATE deliveries SET status = 'dropped', claimed_by = NULL, lease_until = NULL"
        " WHERE id = ? AND status IN ('pending', 'dead')",
        (row_id,),
    )
    return cur.rowcount == 1


def mark(store: Store) -> int:
    """The newest row id (0 when none): rows queued later have higher ids."""
    return store.conn.execute("SELECT COALESCE(MAX(id), 0) FROM deliveries").fetchone()[0]


@dataclass(frozen=True, slots=True)
class Queued:
    """A row as `triage replay --sinks-dir` writes it out."""

    id: int
    sink: str
    delivery_id: str
    event: Event


def after(store: Store, since: int) -> list[Queued]:
    """Rows queued after `mark` returned `since`, oldest first."""
    return [
        Queued(row_id, sink, did, Event.from_json(event))
        for row_id, sink, did, event in store.conn.execute(
            "SELECT id, sink, delivery_id, event FROM deliveries WHERE id > ? ORDER BY id",
            (since,),
        ).fetchall()
    ]


def queue_for_ticket(
    store: Store, sinks: Sequence[Subscriber], kind: str, ticket_id: int, at: datetime
) -> None:
    """An SLA event's deliveries, in the caller's transaction (the response deadline)."""
    if not any(kind in s.subscription.events for s in sinks):
        return
    event = ticket_event(store.conn, kind, ticket_id, at, sla="respond")
    if event is not None:
        queue(store.conn, sinks, event, at)


def queue_event(store: Store, sinks: Sequence[Subscriber], event: Event, at: datetime) -> int:
    """`queue` in the store's current transaction, for callers outside the store."""
    return queue(store.conn, sinks, event, at)
