"""Step 5: a rendered decision written as rows, in the caller's transaction.

One message's rows (message, ticket or append, events, bounce, attachments and
its acknowledgement in the outbox) are written together or not at all: in a
savepoint, or in a transaction its caller rolls back whole if any message fails.
Nothing here decides or renders: the decision arrives complete, its ticket number
included, and is written as it is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from triage import instants
from triage.core.conversation import ticket_number
from triage.core.decision import Action, Decision
from triage.core.outgoing import Rendered
from triage.core.replies import Ack
from triage.core.sla import tracking
from triage.errors import TriageError
from triage.store import deliveries, tickets
from triage.store import files as attachments

if TYPE_CHECKING:
    from triage.store.sqlite import Store


class StaleFacts(TriageError, RuntimeError):
    """The ticket number decided is not the next one: the facts were read outside this
    transaction. A fault of the caller, not of the message: the batch stops."""


def _iso(value: datetime | None) -> str | None:
    return instants.iso(value) if value else None


def write(
    store: Store,
    rendered: Rendered,
    now: datetime,
    sinks: Sequence[deliveries.Subscriber] = (),
    savepoint: bool = True,
) -> Decision:
    """Write one message's rows in a savepoint; returns its decision (a ticket numbered).

    `sinks`: the configured sinks; the events this message causes are queued for those
    subscribed to them, in the same savepoint (triage/store/deliveries.py).
    `savepoint` False: no savepoint, for a caller that rolls the whole transaction back
    when a message fails (engine/batch.py's first try at a batch).
    """
    d = rendered.decision
    if d.action == Action.DUPLICATE:
        return d
    if not savepoint:
        return _write(store, rendered, now, sinks)
    store.conn.execute("SAVEPOINT msg")
    try:
        d = _write(store, rendered, now, sinks)
    except BaseException:
        store.conn.execute("ROLLBACK TO msg")
        store.conn.execute("RELEASE msg")
        raise
    store.conn.execute("RELEASE msg")
    return d


def _write(
    store: Store, rendered: Rendered, now: datetime, sinks: Sequence[deliveries.Subscriber]
) -> Decision:
    d = rendered.decision
    e = d.email
    conn = store.conn
    at = _iso(now)
    ticket_id: int | None = None
    if d.action == Action.TICKET and e is not None:
        dl = d.deadline
        # The id SQLite would pick for a rowid table; the number was decided from the same
        # MAX(id) read in this transaction (the write lock is held: nobody else can take it).
        ticket_id = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM tickets").fetchone()[0]
        number = ticket_number(store.prefix, ticket_id)
        if d.ticket is None:  # a decision made by hand (tests): numbered here
            d = replace(d, ticket=number)
        elif d.ticket != number:
            raise StaleFacts(
                f"{d.source}: decided as ticket {d.ticket}, but the next ticket is {number}"
            )
        conn.execute(
            "INSERT INTO tickets (id, number, status, subject, requester, requester_name, participants,"
            " company, contact, match, verified, priority, level, policy, plan, calendar, timezone,"
            " target, response_due, created_at, linked_to, message_key, queue, vip, forwarded_by)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ticket_id,
                number,
                d.status,
                e.subject,
                d.requester or e.from_addr,
                d.requester_name if d.requester else e.from_name,
                json.dumps(sorted({e.from_addr, d.requester or e.from_addr, *e.cc})),
                d.company,
                d.contact,
                d.match,
                int(d.verified),
                d.priority,
                d.level,
                dl.policy if dl else None,
                dl.plan if dl else None,
                dl.calendar if dl else None,
                d.timezone,
                dl.target if dl else None,
                _iso(d.due),
                at,
                d.linked_ticket,
                e.key,
                d.queue,
                int(d.vip),
                d.forwarded_by,
            ),
        )
        event(store, ticket_id, e.key, "created", at, {"priority": d.priority, "due": _iso(d.due)})
        if d.linked_ticket:
            event(store, ticket_id, e.key, "linked", at, {"to": d.linked_ticket})
    elif d.action == Action.APPEND and d.ticket:
        row = conn.execute("SELECT id FROM tickets WHERE number = ?", (d.ticket,)).fetchone()
        ticket_id = row[0] if row else None
        event(
            store,
            ticket_id,
            e.key if e else None,
            "appended",
            at,
            {"from": e.from_addr if e else None},
        )
        if d.reopened and ticket_id is not None:
            _reopen(store, ticket_id, d, at)
        if d.first_response and ticket_id is not None:
            _first_response(store, ticket_id, e.key if e else None, e.from_addr if e else None, at)
    key = d.message_key or f"sha256:{d.source}"
    inserted = conn.execute(
        "INSERT INTO messages (message_key, message_id, sha256, source, from_addr, subject, date,"
        " received_at, action, reason, ticket_id, size, body, decision, fingerprint)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            key,
            d.message_id,
            e.sha256 if e else None,
            d.source,
            e.from_addr if e else None,
            e.subject if e else None,
            _iso(e.date) if e else None,
            at,
            str(d.action),
            d.reason,
            ticket_id,
            e.size if e else None,
            e.body if e and d.action in (Action.TICKET, Action.APPEND) else None,
            json.dumps(
                {
                    "reasons": list(d.reasons),
                    "match": d.match,
                    "priority": d.priority,
                    **({"evidence": [s.as_json() for s in d.evidence]} if d.evidence else {}),
                    "category": d.category,
                }
            ),
            e.fingerprint if e else None,
        ),
    )
    store.index_later(inserted.lastrowid)
    if d.action in (Action.FILTERED, Action.QUARANTINED, Action.REVIEW):
        detail = {"reason": d.reason}
        if d.category:
            detail["category"] = d.category
        event(store, None, key, str(d.action), at, detail)
    if d.bounce is not None and d.linked_ticket:
        _bounce(store, d, key, at)
    if e is not None and d.action in (Action.TICKET, Action.APPEND):
        for a in e.attachments:
            if a.data and store.files is not None:
                attachments.save(store.files, a.sha256, a.data)
            conn.execute(
                "INSERT INTO attachments (message_key, filename, content_type, size, sha256)"
                " VALUES (?, ?, ?, ?, ?)",
                (key, a.filename, a.content_type, a.size, a.sha256),
            )
    if rendered.ack is not None and ticket_id is not None and d.auto_reply:
        queue_ack(store, ticket_id, key, rendered.ack, now)
    elif ticket_id is not None and d.reply_suppressed:
        event(store, ticket_id, key, "auto_reply_suppressed", at, {"why": d.reply_suppressed})
    if sinks:
        deliveries.for_decision(conn, sinks, d, ticket_id, now, _delivery_status(store))
    return d


def _reopen(store: Store, ticket_id: int, d: Decision, at: str | None) -> None:
    """A customer's reply ended the ticket's wait (pending) or reopened it (resolved, closed):
    open again, and a paused clock running with its deadline moved (`d.resumed_due`)."""
    e = d.email
    conn = store.conn
    conn.execute(  # the deadline moves only when a paused clock runs again
        "UPDATE tickets SET status = 'open', closed_at = NULL, paused_at = NULL,"
        " response_due = COALESCE(?, response_due) WHERE id = ?",
        (_iso(d.resumed_due), ticket_id),
    )
    detail: dict = {"from": d.reopened, "to": "open", "by": e.from_addr if e else None}
    if d.resumed_due is not None:
        detail["due"] = _iso(d.resumed_due)
    event(store, ticket_id, e.key if e else None, "reopened", at, detail)


def _first_response(
    store: Store, ticket_id: int, key: str | None, sender: str | None, at: str
) -> None:
    """An agent's reply answered the ticket: its first response, once (never overwritten),
    and a `first_response` event when this message set it."""
    answered = instants.stored(at)
    if not tickets.set_first_response(store, ticket_id, answered):
        return
    due = store.conn.execute(
        "SELECT response_due FROM tickets WHERE id = ?", (ticket_id,)
    ).fetchone()[0]
    within = tracking.within(answered, instants.stored(due) if due else None)
    detail = {"due": due, "within_target": within, "by": sender, "from_mail": True}
    event(store, ticket_id, key, "first_response", at, detail)


def _delivery_status(store: Store) -> str:
    """Replay queues what would be sent, marked so that nothing sends it (as acknowledgements)."""
    return "replay" if store.outbox_status == "replay" else "pending"


def _bounce(store: Store, d: Decision, key: str, at: str | None) -> None:
    """Our acknowledgement bounced: an event on its ticket, and the address remembered.

    Only the address that acknowledgement was sent to is remembered (the decision says
    which; checked here again): a report anyone can write must never silence another.
    """
    b = d.bounce
    assert b is not None
    conn = store.conn
    row = conn.execute("SELECT id FROM tickets WHERE number = ?", (d.linked_ticket,)).fetchone()
    ticket_id = row[0] if row else None
    detail = {
        "recipient": b.recipient,
        "status": b.status,
        "action": b.action,
        "diagnostic": b.diagnostic,
    }
    event(store, ticket_id, key, "delivery_failed", at, detail)
    if not b.recipient:
        return
    ids = json.dumps(list(b.message_ids[:50]))
    conn.execute(
        "INSERT INTO bounces (address, at, status, permanent, ticket_id, message_key)"
        " SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM outbox WHERE lower(to_addr) = ?"
        " AND message_id IN (SELECT value FROM json_each(?)))",
        (b.recipient, at, b.status, int(b.permanent), ticket_id, key, b.recipient, ids),
    )
    conn.execute(  # the rows found by their Message-ID (an index), not by `sent`: most are
        "UPDATE outbox SET status = 'bounced', last_error = ? WHERE id IN (SELECT id FROM"
        " outbox WHERE message_id IN (SELECT value FROM json_each(?)))"
        " AND status = 'sent' AND lower(to_addr) = ?",
        (f"{b.status or ''} {b.diagnostic or ''}".strip()[:500], ids, b.recipient),
    )


def queue_ack(store: Store, ticket_id: int, key: str | None, ack: Ack, now: datetime) -> None:
    """An acknowledgement row in the outbox, in the caller's transaction."""
    at = _iso(now)
    store.conn.execute(
        "INSERT INTO outbox (ticket_id, to_addr, subject, message_id, raw, status, attempts, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
        (
            ticket_id,
            ack.to,
            ack.subject,
            ack.message_id,
            ack.raw.decode("utf-8"),
            store.outbox_status,
            at,
        ),
    )
    event(store, ticket_id, key, "auto_reply_queued", at, {"to": ack.to})


def event(
    store: Store, ticket_id: int | None, key: str | None, kind: str, at: str | None, detail: dict
) -> None:
    """One row of the audit trail."""
    store.conn.execute(
        "INSERT INTO events (ticket_id, message_key, kind, at, detail) VALUES (?, ?, ?, ?, ?)",
        (ticket_id, key, kind, at, json.dumps(detail)),
    )
