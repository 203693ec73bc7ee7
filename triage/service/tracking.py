"""SLA tracking against the store: first responses, warnings, breaches, the report.

Two halves:

* pure: `Ticket` values in, decisions out, with the clock passed in
  (`is_breached`, `used`, `due_events`, `at_risk_of`, `tally`, `ticket_number_from`);
* edge: thin functions taking a `Store` that read rows and write events
  (`respond`, `check`, `at_risk`, `breached`, `report`). All SQL is parameterised.

A ticket is *answered* once `first_response_at` is set. An unanswered ticket
is *breached* when its `response_due` has passed (`due < now`); it is *at risk*
when it is not breached and `sla.progress` (open time used on the ticket's
policy calendar, from `created_at`) is at least the threshold. Tickets with no
deadline (best effort / user scheduled) are never at risk or breached, and
closed tickets are left alone by `check`, `at_risk` and `breached`.

`check` writes an `sla_warning` and an `sla_breached` event at most once per
ticket, reading the events already written inside the same write transaction,
so a timer and the daemon running it at once cannot write one twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from triage import instants, log
from triage.core import sla as sla_mod
from triage.core.conversation import ticket_number
from triage.errors import TriageError
from triage.sinks.events import SLA_BREACHED, SLA_WARNING
from triage.store import deliveries
from triage.store.sqlite import Store

WARNING = "sla_warning"
BREACHED = "sla_breached"
FIRST_RESPONSE = "first_response"
THRESHOLD = 0.75
CLOSED = "closed"
NO_PRIORITY = "(none)"


class TrackingError(TriageError, ValueError):
    """A request the store cannot honour; the message says what to do instead."""


class UnknownTicket(TrackingError):
    def __init__(self, number: str) -> None:
        super().__init__(f"no ticket {number}")
        self.number = number


# --------------------------------------------------------------------------- values


def iso(value: datetime) -> str:
    """UTC, ISO 8601 with `Z`, as the store writes instants."""
    return instants.iso(value)


def instant(text: str | None) -> datetime | None:
    """A stored ISO 8601 instant (`Z` or an offset) -> aware UTC datetime; None stays None."""
    if not text:
        return None
    return instants.stored(text)


@dataclass(frozen=True, slots=True)
class Ticket:
    """The columns of a `tickets` row that SLA tracking needs, instants parsed."""

    id: int
    number: str
    status: str
    priority: str | None
    level: int | None
    policy: str | None
    plan: str | None
    timezone: str | None
    due: datetime | None
    created: datetime
    responded: datetime | None


COLUMNS = (
    "id, number, status, priority, level, policy, plan, timezone,"
    " response_due, created_at, first_response_at"
)


def from_row(row: tuple) -> Ticket:
    """A row selected with `COLUMNS` -> Ticket."""
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
    )


def ticket_number_from(text: str, prefix: str = "T-") -> str:
    """`T-000123`, `t-123`, `#T-000123` or `123` -> `T-000123`; TrackingError otherwise."""
    raw = text.strip().lstrip("#")
    digits = raw[len(prefix) :] if prefix and raw.lower().startswith(prefix.lower()) else raw
    if not digits.isdigit() or not digits.isascii() or int(digits) == 0:
        example = ticket_number(prefix, 123)
        raise TrackingError(f"{text!r} is not a ticket number; fix: write {example} or just 123")
    return ticket_number(prefix, int(digits))


# --------------------------------------------------------------------------- pure rules


def is_tracked(t: Ticket) -> bool:
    """Unanswered, not closed, with a deadline: the tickets warnings and breaches are about."""
    return t.responded is None and t.due is not None and t.status != CLOSED


def is_breached(t: Ticket, now: datetime) -> bool:
    """Tracked and past its deadline at `now`."""
    return is_tracked(t) and t.due is not None and t.due < now


def used(t: Ticket, policies: Mapping[str, sla_mod.Policy], now: datetime) -> float | None:
    """Fraction of the ticket's allowed open time used at `now` (None: no deadline).

    Counted on the ticket's own policy, plan, priority and time zone from its
    creation, so nights and weekends off the calendar do not count. Raises
    SlaError (naming file and fix) when the policy or label is no longer known.
    """
    if t.due is None:
        return None
    if t.policy is None or t.priority is None:
        raise sla_mod.SlaError(
            f"{t.number}: has a deadline but no policy or priority; "
            "fix: re-run the message through `triage replay` into a fresh database"
        )
    policy = policies[t.policy]
    return sla_mod.progress(
        policy, t.plan, policy.rank_of(t.priority), t.created, now, t.timezone or "UTC"
    )


@dataclass(frozen=True, slots=True)
class Due:
    """What a check at one instant should write."""

    warn: tuple[tuple[Ticket, float], ...] = ()  # with the fraction used
    breach: tuple[Ticket, ...] = ()
    problems: tuple[str, ...] = ()  # tickets whose progress could not be computed


def due_events(
    tickets: Iterable[Ticket],
    written: Mapping[int, frozenset[str]],
    policies: Mapping[str, sla_mod.Policy],
    now: datetime,
    threshold: float = THRESHOLD,
) -> Due:
    """Events owed at `now`, given the event kinds already `written` per ticket id.

    A breach is owed once per breached ticket; a warning once per ticket that
    has used `threshold` of its open time, is not breached and has no breach
    event (a ticket first seen after its deadline gets the breach only).
    """
    warn: list[tuple[Ticket, float]] = []
    breach: list[Ticket] = []
    problems: list[str] = []
    for t in tickets:
        if not is_tracked(t):
            continue
        kinds = written.get(t.id, frozenset())
        if is_breached(t, now):
            if BREACHED not in kinds:
                breach.append(t)
            continue
        if WARNING in kinds or BREACHED in kinds:
            continue
        try:
            fraction = used(t, policies, now)
        except ValueError as exc:
            problems.append(f"{t.number}: {exc}")
            continue
        if fraction is not None and fraction >= threshold:
            warn.append((t, fraction))
    return Due(tuple(warn), tuple(breach), tuple(problems))


def at_risk_of(
    tickets: Iterable[Ticket],
    policies: Mapping[str, sla_mod.Policy],
    now: datetime,
    threshold: float = THRESHOLD,
) -> tuple[list[str], list[str]]:
    """(numbers at risk at `now`, problems): tracked, not breached, progress >= threshold."""
    numbers: list[str] = []
    problems: list[str] = []
    for t in tickets:
        if not is_tracked(t) or is_breached(t, now):
            continue
        try:
            fraction = used(t, policies, now)
        except ValueError as exc:
            problems.append(f"{t.number}: {exc}")
            continue
        if fraction is not None and fraction >= threshold:
            numbers.append(t.number)
    return numbers, problems


@dataclass(frozen=True, slots=True)
class ReportRow:
    """Response figures for one priority (or the total).

    Every ticket falls in exactly one of: no_target, within, late, breached
    (unanswered and past due at the report's instant), pending (unanswered, not
    yet due). `percent` is within / (within + late + breached): the share
    answered in time among tickets whose outcome is known; None when none is.
    """

    priority: str
    tickets: int = 0
    within: int = 0
    late: int = 0
    breached: int = 0
    pending: int = 0
    no_target: int = 0

    @property
    def decided(self) -> int:
        return self.within + self.late + self.breached

    @property
    def percent(self) -> float | None:
        return round(100 * self.within / self.decided, 1) if self.decided else None

    def as_json(self) -> dict:
        return {
            "priority": self.priority,
            "tickets": self.tickets,
            "within_target": self.within,
            "late": self.late,
            "open_breached": self.breached,
            "open_in_time": self.pending,
            "no_target": self.no_target,
            "percent_within_target": self.percent,
        }


def outcome(t: Ticket, now: datetime) -> str:
    """The ReportRow field a ticket counts in at `now`."""
    if t.due is None:
        return "no_target"
    if t.responded is not None:
        return "within" if t.responded <= t.due else "late"
    return "breached" if t.due < now else "pending"


def tally(
    tickets: Iterable[Ticket], now: datetime, since: datetime | None = None
) -> tuple[list[ReportRow], ReportRow]:
    """(one row per priority, most urgent first; the total) over tickets created at or after `since`."""
    counts: dict[str, dict[str, int]] = {}
    order: dict[str, int] = {}
    for t in tickets:
        if since is not None and t.created < since:
            continue
        label = t.priority or NO_PRIORITY
        c = counts.setdefault(label, {"tickets": 0})
        c["tickets"] += 1
        key = outcome(t, now)
        c[key] = c.get(key, 0) + 1
        order[label] = min(order.get(label, 99), t.level if t.level is not None else 99)
    rows = [
        ReportRow(label, **counts[label]) for label in sorted(counts, key=lambda x: (order[x], x))
    ]
    total = ReportRow(
        "total",
        **{
            name: sum(getattr(r, name) for r in rows)
            for name in ("tickets", "within", "late", "breached", "pending", "no_target")
        },
    )
    return rows, total


# --------------------------------------------------------------------------- store edge


def _select(store: Store, where: str = "", args: tuple = ()) -> list[Ticket]:
    sql = f"SELECT {COLUMNS} FROM tickets" + (f" WHERE {where}" if where else "") + " ORDER BY id"
    return [from_row(r) for r in store.conn.execute(sql, args).fetchall()]


def tracked(store: Store) -> list[Ticket]:
    """Unanswered, not closed tickets with a deadline."""
    return _select(
        store,
        "first_response_at IS NULL AND response_due IS NOT NULL AND status != ?",
        (CLOSED,),
    )


def written_kinds(store: Store) -> dict[int, frozenset[str]]:
    """ticket id -> the SLA event kinds already written for it."""
    out: dict[int, set[str]] = {}
    rows = store.conn.execute(
        "SELECT ticket_id, kind FROM events WHERE kind IN (?, ?) AND ticket_id IS NOT NULL",
        (WARNING, BREACHED),
    ).fetchall()
    for ticket_id, kind in rows:
        out.setdefault(ticket_id, set()).add(kind)
    return {k: frozenset(v) for k, v in out.items()}


def _event(store: Store, ticket_id: int, kind: str, at: datetime, detail: dict) -> None:
    store.conn.execute(
        "INSERT INTO events (ticket_id, message_key, kind, at, detail) VALUES (?, NULL, ?, ?, ?)",
        (ticket_id, kind, iso(at), json.dumps(detail)),
    )


def _deliver(
    store: Store, sinks: Sequence[deliveries.Subscriber], kind: str, ticket_id: int, at: datetime
) -> None:
    """The SLA event's deliveries, in the check's transaction (the response deadline)."""
    if not any(kind in s.subscription.events for s in sinks):
        return
    event = deliveries.ticket_event(store.conn, kind, ticket_id, at, sla="respond")
    if event is not None:
        deliveries.queue(store.conn, sinks, event, at)


@dataclass(frozen=True, slots=True)
class CheckResult:
    now: datetime
    warned: tuple[str, ...] = ()
    breached: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default=())


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
        owed = due_events(tracked(store), written_kinds(store), policies, now, threshold)
        for t in owed.breach:
            _event(
                store,
                t.id,
                BREACHED,
                now,
                {"due": iso(t.due) if t.due else None, "priority": t.priority},
            )
            _deliver(store, sinks, SLA_BREACHED, t.id, now)
        for t, fraction in owed.warn:
            _event(
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
            _deliver(store, sinks, SLA_WARNING, t.id, now)
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
    owed = due_events(tracked(store), written_kinds(store), policies, now, threshold)
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
    numbers, problems = at_risk_of(tracked(store), policies, now, threshold)
    if problems:
        logger = log.get(component="tracking")
        for problem in problems:
            logger.warning("sla_progress_unknown", problem=problem)
    return numbers


def breached(store: Store, now: datetime) -> list[str]:
    """Numbers of tickets not answered, not closed, past their deadline at `now`."""
    return [t.number for t in tracked(store) if is_breached(t, now)]


@dataclass(frozen=True, slots=True)
class Responded:
    number: str
    at: datetime  # the first response (the earlier one when `already`)
    already: bool
    due: datetime | None
    within: bool | None  # None: the ticket has no deadline


def respond(store: Store, number: str, at: datetime) -> Responded:
    """Record the first response on ticket `number` at `at`, once.

    A ticket already answered keeps its first response (`already` is True).
    UnknownTicket when no such ticket; TrackingError when `at` is before the
    ticket was opened.
    """
    store.begin()
    try:
        rows = _select(store, "number = ?", (number,))
        if not rows:
            raise UnknownTicket(number)
        t = rows[0]
        if t.responded is not None:
            store.rollback()
            return Responded(t.number, t.responded, True, t.due, _within(t.responded, t.due))
        if at < t.created:
            raise TrackingError(
                f"{t.number} was opened at {iso(t.created)}, after the response time "
                f"{iso(at)}; fix: give the instant of the first answer with --at"
            )
        store.conn.execute(
            "UPDATE tickets SET first_response_at = ? WHERE id = ? AND first_response_at IS NULL",
            (iso(at), t.id),
        )
        within = _within(at, t.due)
        _event(
            store,
            t.id,
            FIRST_RESPONSE,
            at,
            {"due": iso(t.due) if t.due else None, "within_target": within},
        )
        store.commit()
    except BaseException:
        store.rollback()
        raise
    return Responded(t.number, at, False, t.due, within)


def _within(at: datetime, due: datetime | None) -> bool | None:
    return None if due is None else at <= due


@dataclass(frozen=True, slots=True)
class Report:
    now: datetime
    since: datetime | None
    rows: list[ReportRow]
    total: ReportRow

    def as_json(self) -> dict:
        return {
            "now": iso(self.now),
            "since": iso(self.since) if self.since else None,
            "priorities": [r.as_json() for r in self.rows],
            "total": self.total.as_json(),
        }


def report(store: Store, now: datetime, since: datetime | None = None) -> Report:
    """Response figures per priority for tickets created at or after `since`."""
    rows, total = tally(_select(store), now, since)
    return Report(now, since, rows, total)
