"""SLA tracking's rules: which tickets are at risk or breached, what a check owes, the report.

Pure: `Ticket` values in, decisions out, with the clock passed in. The store reads the
tickets (triage/store/tickets.py) and the events already written (triage/store/events.py);
triage/service/tracking.py joins them in one transaction.

A ticket is *answered* once `first_response_at` is set. An unanswered ticket
is *breached* when its `response_due` has passed (`due < now`); it is *at risk*
when it is not breached and `sla.progress` (open time used on the ticket's
policy calendar, from `created_at`) is at least the threshold. Tickets with no
deadline (best effort / user scheduled) are never at risk or breached, and
closed tickets are left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from triage import instants
from triage.core import sla as sla_mod
from triage.core.conversation import ticket_number
from triage.core.lifecycle import DONE
from triage.errors import TriageError

WARNING = "sla_warning"
BREACHED = "sla_breached"
FIRST_RESPONSE = "first_response"
THRESHOLD = 0.75
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
    paused: datetime | None = None  # pending, on a policy that pauses its clock meanwhile


def from_row(row: Mapping[str, object]) -> Ticket:
    """A `tickets` row read by column name (as `triage ticket show` has it)."""

    def when(key: str) -> datetime | None:
        return instant(row.get(key))  # type: ignore[arg-type]

    created = instant(row["created_at"])  # type: ignore[arg-type]
    assert created is not None
    return Ticket(
        row["id"],
        row["number"],
        row["status"],
        row["priority"],
        row["level"],  # type: ignore[arg-type]
        row["policy"],
        row["plan"],
        row["timezone"],
        when("response_due"),
        created,  # type: ignore[arg-type]
        when("first_response_at"),
        when("paused_at"),
    )


COLUMNS = (
    "id, number, status, priority, level, policy, plan, timezone,"
    " response_due, created_at, first_response_at"
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
    """Unanswered, not resolved or closed, with a deadline whose clock runs (not paused):
    the tickets warnings and breaches are about."""
    return t.responded is None and t.due is not None and t.status not in DONE and t.paused is None


def is_breached(t: Ticket, now: datetime) -> bool:
    """Tracked and past its deadline at `now`."""
    return is_tracked(t) and t.due is not None and t.due < now


def clock(t: Ticket, now: datetime) -> datetime:
    """The instant the ticket's response clock reads at `now`: a paused clock stopped when
    it paused (pending, on a policy that pauses it)."""
    return min(now, t.paused) if t.paused is not None else now


def is_breached_open(t: Ticket, now: datetime) -> bool:
    """Unanswered, not resolved or closed, and past its deadline on its own clock: a ticket
    paused before its deadline is not breached while it waits on the customer; one paused
    after it stays breached (pausing does not hide a breach; `resumed_due` keeps it too)."""
    if t.responded is not None or t.due is None or t.status in DONE:
        return False
    return t.due < clock(t, now)


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
    (unanswered and past due at the report's instant, or at the instant its clock
    paused), pending (unanswered, not yet due, or paused before its deadline). `percent` is within / (within + late + breached): the share
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
    return "breached" if t.due < clock(t, now) else "pending"


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


OUTCOMES = ("no_target", "within", "late", "breached", "pending")


def tally_counted(
    counted: Iterable[tuple[str | None, int | None, int, int, int, int, int]],
) -> tuple[list[ReportRow], ReportRow]:
    """`tally`'s result from counts made elsewhere (the store counts in SQL, by `outcome`'s
    rules): one (priority, its most urgent level, tickets, no_target, within, late,
    breached) per stored priority; the rest of each priority's tickets are pending."""
    counts: dict[str, dict[str, int]] = {}
    order: dict[str, int] = {}
    for priority, level, tickets, *decided in counted:
        label = priority or NO_PRIORITY  # None and "" are one row, as in `tally`
        c = counts.setdefault(label, dict.fromkeys(("tickets", *OUTCOMES), 0))
        c["tickets"] += tickets
        for name, n in zip(OUTCOMES[:4], decided, strict=True):
            c[name] += n
        c["pending"] += tickets - sum(decided)
        order[label] = min(order.get(label, 99), level if level is not None else 99)
    rows = [
        ReportRow(label, **counts[label]) for label in sorted(counts, key=lambda x: (order[x], x))
    ]
    total = ReportRow(
        "total",
        **{name: sum(getattr(r, name) for r in rows) for name in ("tickets", *OUTCOMES)},
    )
    return rows, total


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one check wrote (or, previewed, would write) at `now`, by ticket number."""

    now: datetime
    warned: tuple[str, ...] = ()
    breached: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Responded:
    """The first response recorded on a ticket, or the one it already had."""

    number: str
    at: datetime  # the first response (the earlier one when `already`)
    already: bool
    due: datetime | None
    within: bool | None  # None: the ticket has no deadline


def within(at: datetime, due: datetime | None) -> bool | None:
    """Whether a response at `at` met `due` (None: the ticket has no deadline)."""
    return None if due is None else at <= due


@dataclass(frozen=True, slots=True)
class Report:
    """Response figures per priority at `now`, for tickets created at or after `since`."""

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
