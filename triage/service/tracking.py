"""SLA tracking against the store: first responses, warnings, breaches, the report.

The rules are pure, in triage/core/sla/tracking.py (`Ticket` values in, decisions out,
the clock passed in); the rows are read and written by triage/store/tickets.py and
triage/store/events.py. This module joins them: one transaction per check or response,
and the log lines.

`check` writes an `sla_warning` and an `sla_breached` event at most once per
ticket, reading the events already written inside the same write transaction,
so a timer and the daemon running it at once cannot write one twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from triage import log
from triage.core import sla as sla_mod
from triage.core.sla.tracking import (
    BREACHED,
    FIRST_RESPONSE,
    THRESHOLD,
    WARNING,
    CheckResult,
    Report,
    Responded,
    Ticket,
    TrackingError,
    UnknownTicket,
    at_risk_of,
    due_events,
    is_breached,
    iso,
    tally_counted,
    ticket_number_from,
    within,
)
from triage.sinks.events import SLA_BREACHED, SLA_WARNING
from triage.store import deliveries, events, tickets
from triage.store.sqlite import Store

# Where commands and tests have always found them: the values and rules of tracking.
__all__ = [
    "BREACHED", "FIRST_RESPONSE", "THRESHOLD", "WARNING", "CheckResult", "Report", "Responded",
    "Ticket", "TrackingError", "UnknownTicket", "at_risk", "breached", "check", "due_events",
    "iso", "preview", "report", "respond", "ticket_number_from",
]  # fmt: skip


def check(
    store: Store,
    policies: Mapping[str, sla_mod.Policy],
    now: datetime,
    threshold: float = THRESHOLD,
    sinks: Sequence[deliveries.Subscriber] = (),
) -> CheckResult:
    """Write the `sla_warning` / `sla_breached` events owed at `now`, in one transaction,
    with the `sla.warning` / `sla.breached` deliveries for the `sinks` subscribed to them.

    Repeating a check writes nothing new: events already written are read
    under the same write lock. Tickets whose progress cannot be computed (policy
    file gone, label renamed) are listed in `problems`; they still breach.
    """
    store.begin()
    try:
        owed = due_events(
            tickets.tracked(store), events.sla_written(store), policies, now, threshold
        )
        for t in owed.breach:
            events.add(
                store,
                t.id,
                BREACHED,
                now,
                {"due": iso(t.due) if t.due else None, "priority": t.priority},
            )
            deliveries.queue_for_ticket(store, sinks, SLA_BREACHED, t.id, now)
        for t, fraction in owed.warn:
            events.add(
                store,
                t.id,
                WARNING,
                now,
                {
                    "due": iso(t.due) if t.due else None,
                    "priority": t.priority,
                    "used": round(fraction, 4),
                    "threshold": threshold,
                },
            )
            deliveries.queue_for_ticket(store, sinks, SLA_WARNING, t.id, now)
        store.commit()
    except BaseException:
        store.rollback()
        raise
    result = CheckResult(
        now,
        tuple(t.number for t, _ in owed.warn),
        tuple(t.number for t in owed.breach),
        owed.problems,
    )
    logger = log.get(component="tracking")
    for number in result.breached:
        logger.warning("sla_breached", ticket=number)
    for number in result.warned:
        logger.info("sla_warning", ticket=number)
    for problem in result.problems:
        logger.warning("sla_progress_unknown", problem=problem)
    return result


def preview(
    store: Store,
    policies: Mapping[str, sla_mod.Policy],
    now: datetime,
    threshold: float = THRESHOLD,
) -> CheckResult:
    """What `check` would write at `now`, written nowhere (for a `now` not yet reached)."""
    owed = due_events(tickets.tracked(store), events.sla_written(store), policies, now, threshold)
    return CheckResult(
        now,
        tuple(t.number for t, _ in owed.warn),
        tuple(t.number for t in owed.breach),
        owed.problems,
    )


def at_risk(
    store: Store,
    policies: Mapping[str, sla_mod.Policy],
    now: datetime,
    threshold: float = THRESHOLD,
) -> list[str]:
    """Numbers of tickets not answered, not breached, with progress >= `threshold` at `now`."""
    numbers, problems = at_risk_of(tickets.tracked(store), policies, now, threshold)
    if problems:
        logger = log.get(component="tracking")
        for problem in problems:
            logger.warning("sla_progress_unknown", problem=problem)
    return numbers


def breached(store: Store, now: datetime) -> list[str]:
    """Numbers of tickets not answered, not closed, past their deadline at `now`."""
    return [t.number for t in tickets.tracked(store) if is_breached(t, now)]


def respond(store: Store, number: str, at: datetime) -> Responded:
    """Record the first response on ticket `number` at `at`, once.

    A ticket already answered keeps its first response (`already` is True).
    UnknownTicket when no such ticket; TrackingError when `at` is before the
    ticket was opened.
    """
    store.begin()
    try:
        t = tickets.by_number(store, number)
        if t is None:
            raise UnknownTicket(number)
        if t.responded is not None:
            store.rollback()
            return Responded(t.number, t.responded, True, t.due, within(t.responded, t.due))
        if at < t.created:
            raise TrackingError(
                f"{t.number} was opened at {iso(t.created)}, after the response time "
                f"{iso(at)}; fix: give the instant of the first answer with --at"
            )
        tickets.set_first_response(store, t.id, at)
        met = within(at, t.due)
        events.add(
            store,
            t.id,
            FIRST_RESPONSE,
            at,
            {"due": iso(t.due) if t.due else None, "within_target": met},
        )
        store.commit()
    except BaseException:
        store.rollback()
        raise
    return Responded(t.number, at, False, t.due, met)


def report(store: Store, now: datetime, since: datetime | None = None) -> Report:
    """Response figures per priority for tickets created at or after `since`."""
    rows, total = tally_counted(tickets.outcome_counts(store, now, since))
    return Report(now, since, rows, total)
