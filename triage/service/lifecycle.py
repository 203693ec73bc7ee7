"""Changes people make to a ticket: state, assignee, note, priority.

Each runs in one write transaction: read the ticket under the lock, let the pure rules
(triage/core/lifecycle.py) decide, write the change and its event (who, when), and queue
the sink deliveries it causes (`ticket.status_changed`, `ticket.assigned`, `ticket.noted`,
`ticket.priority_changed`), so a crash leaves all of it or none. `view` gathers what `triage ticket show` prints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from triage import instants, log
from triage.core import lifecycle as rules
from triage.core import sla as sla_mod
from triage.core.sla.tracking import UnknownTicket, instant
from triage.sinks.events import (
    TICKET_ASSIGNED,
    TICKET_NOTED,
    TICKET_PRIORITY_CHANGED,
    TICKET_STATUS_CHANGED,
)
from triage.store import deliveries
from triage.store import lifecycle as rows
from triage.store.sqlite import Store

ASSIGNED = "assigned"
NOTE = "note"
STATUS_CHANGED = "status_changed"
PRIORITY_CHANGED = "priority_changed"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change, and when (`--by`, `--at`)."""

    by: str
    at: datetime


def _change(store: Store, number: str, apply: Callable[[dict], None]) -> dict:
    """Run `apply(ticket row)` in one write transaction; the ticket's row after it."""
    store.begin()
    try:
        row = rows.ticket(store, number)
        if row is None:
            raise UnknownTicket(number)
        apply(row)
        after = rows.ticket(store, number)
        store.commit()
    except BaseException:
        store.rollback()
        raise
    assert after is not None
    return after


def set_status(
    store: Store,
    policies: Mapping[str, sla_mod.Policy],
    number: str,
    status: str,
    actor: Actor,
    sinks: Sequence[deliveries.Subscriber] = (),
) -> dict:
    """Move the ticket to `status`; LifecycleError when its state does not allow it;
    `ticket.status_changed` to the sinks.

    Entering pending pauses the response clock where the ticket's policy says so;
    leaving pending moves the deadline by the open time that passed while paused.
    """

    def apply(t: dict) -> None:
        policy = policies.get(t["policy"]) if t["policy"] else None
        pauses = bool(policy and policy.pause_when_pending and t["response_due"])
        m = rules.move(t["number"], t["status"], status, pauses)
        due = instant(t["response_due"])
        paused = instant(t["paused_at"])
        detail: dict = {"from": m.before, "to": m.after, "by": actor.by}
        if m.clock == rules.PAUSE:
            paused = actor.at
            detail["clock"] = "paused"
        elif m.clock == rules.RESUME and paused is not None and policy is not None:
            moved = rules.resumed_due(
                policy,
                t["plan"],
                t["priority"],
                t["timezone"] or "UTC",
                due,
                paused,
                max(actor.at, paused),
            )
            detail.update(clock="resumed", paused_at=instants.iso(paused))
            detail["due_before"] = instants.iso(due) if due else None
            detail["due"] = instants.iso(moved) if moved else None
            due, paused = moved, None
        if m.before == rules.PENDING:
            paused = None
        closed = actor.at if m.after == rules.CLOSED else None
        rows.set_status(store, t["id"], m.after, closed, paused, due)
        rows.event(store, t["id"], STATUS_CHANGED, actor.at, detail)
        rows.queue_ticket_event(
            store,
            sinks,
            TICKET_STATUS_CHANGED,
            t["id"],
            actor.at,
            reasons=(f"status {m.before} -> {m.after} by {actor.by}",),
            change={"status": m.after, "previous_status": m.before, "by": actor.by},
        )

    after = _change(store, number, apply)
    log.get(component="lifecycle").info("ticket_status_changed", ticket=number, status=status)
    return after


def assign(
    store: Store,
    number: str,
    who: str,
    actor: Actor,
    sinks: Sequence[deliveries.Subscriber] = (),
) -> dict:
    """Give the ticket to `who` (an empty name: to nobody); `ticket.assigned` to the sinks."""

    def apply(t: dict) -> None:
        rows.set_assignee(store, t["id"], who or None)
        detail = {"from": t["assignee"], "to": who or None, "by": actor.by}
        rows.event(store, t["id"], ASSIGNED, actor.at, detail)
        rows.queue_ticket_event(
            store,
            sinks,
            TICKET_ASSIGNED,
            t["id"],
            actor.at,
            reasons=(f"assigned to {who or 'nobody'} by {actor.by}",),
            change={"assignee": who or None, "previous_assignee": t["assignee"], "by": actor.by},
        )

    return _change(store, number, apply)


def note(
    store: Store,
    number: str,
    text: str,
    actor: Actor,
    sinks: Sequence[deliveries.Subscriber] = (),
) -> dict:
    """An internal note on the ticket: never mailed to the customer; `ticket.noted` to the
    sinks subscribed to it (the desk's own systems)."""

    def apply(t: dict) -> None:
        rows.event(store, t["id"], NOTE, actor.at, {"text": text, "by": actor.by})
        rows.queue_ticket_event(
            store,
            sinks,
            TICKET_NOTED,
            t["id"],
            actor.at,
            reasons=(f"note by {actor.by}",),
            change={"note": text, "by": actor.by},
        )

    return _change(store, number, apply)


def set_priority(
    store: Store,
    policies: Mapping[str, sla_mod.Policy],
    default_policy: str,
    number: str,
    priority: str,
    reason: str,
    actor: Actor,
    sinks: Sequence[deliveries.Subscriber] = (),
) -> dict:
    """Set the ticket's priority and recompute its deadline from its policy (from when it
    was opened, on its plan and in its zone); `ticket.priority_changed` to the sinks.

    SlaError (naming the labels) for a priority the policy does not know.
    """

    def apply(t: dict) -> None:
        policy = policies[t["policy"] or default_policy]
        rank = policy.rank_of(priority)
        label = policy.labels[rank]
        level = next((lv for lv, r in sorted(policy.levels.items()) if r == rank), t["level"])
        created = instant(t["created_at"])
        assert created is not None  # NOT NULL in the schema
        deadline = sla_mod.due(policy, t["plan"], rank, created, t["timezone"] or "UTC")
        rows.set_priority(store, t["id"], label, level, deadline.target, deadline.due)
        rows.event(
            store,
            t["id"],
            PRIORITY_CHANGED,
            actor.at,
            {
                "from": t["priority"],
                "to": label,
                "reason": reason,
                "by": actor.by,
                "due": instants.iso(deadline.due) if deadline.due else None,
            },
        )
        rows.queue_ticket_event(
            store,
            sinks,
            TICKET_PRIORITY_CHANGED,
            t["id"],
            actor.at,
            reasons=(f"priority {t['priority']} -> {label} by {actor.by}: {reason}",),
            previous_priority=t["priority"],
        )

    after = _change(store, number, apply)
    log.get(component="lifecycle").info("ticket_priority_changed", ticket=number, to=priority)
    return after


@dataclass(frozen=True, slots=True)
class View:
    """A ticket whole, as `triage ticket show` prints it."""

    ticket: dict
    thread: list[dict]
    events: list[dict]
    attachments: list[dict]
    why: list[str]  # the opening message's priority and SLA lines


def view(store: Store, number: str) -> View:
    """Everything about ticket `number`; UnknownTicket when there is none."""
    t = rows.ticket(store, number)
    if t is None:
        raise UnknownTicket(number)
    why = [
        r
        for r in rows.opening_reasons(store, t["message_key"])
        if r.startswith(("priority", "sla:", "contact:", "requester:"))
    ]
    events = rows.events(store, t["id"])
    for e in events:
        d = e["detail"] if isinstance(e["detail"], dict) else {}
        if e["kind"] == PRIORITY_CHANGED:
            why.append(
                f"priority: {d.get('from')} -> {d.get('to')} by {d.get('by')} at {e['at']}:"
                f" {d.get('reason')}"
            )
    return View(
        t,
        rows.thread(store, t["id"]),
        events,
        rows.attachments(store, t["id"]),
        why,
    )
