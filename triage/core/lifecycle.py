"""A ticket's states and the moves between them, as data; what a move does to the SLA clock.

Pure: the store reads the ticket and writes what `move` returns
(triage/store/lifecycle.py, triage/service/lifecycle.py); nothing here reads the clock.

States: `open` (someone on our side owes the next step), `pending` (waiting on the
customer), `resolved` (we think it is done; the customer may still say otherwise) and
`closed` (done). A ticket held for approval (`pending-approval`, [contacts] unknown =
"hold") may be opened or closed by hand like an open one.

The response clock pauses while a ticket is pending only where its policy says so
(`[policy] pause_when_pending = true`; none of the shipped policies does, since none of
their contracts says so): the instant it paused is kept, and when the ticket leaves
pending its deadline moves later by the open time of the policy's calendar that passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from triage import instants
from triage.core import sla as sla_mod
from triage.core.conversation import Thread, TicketRef
from triage.core.message import Email
from triage.core.sla.calendars import from_us, to_us
from triage.core.sla.notation import NONE, zone_named
from triage.errors import TriageError

OPEN = "open"
PENDING = "pending"
RESOLVED = "resolved"
CLOSED = "closed"
HELD = "pending-approval"  # a new ticket from a sender held for approval
STATES = (OPEN, PENDING, RESOLVED, CLOSED)
DONE = frozenset({RESOLVED, CLOSED})  # not counted as open by `triage tickets --open`

# from -> the states a person may move it to
ALLOWED: dict[str, frozenset[str]] = {
    OPEN: frozenset({PENDING, RESOLVED, CLOSED}),
    PENDING: frozenset({OPEN, RESOLVED, CLOSED}),
    RESOLVED: frozenset({OPEN, CLOSED}),
    CLOSED: frozenset({OPEN}),
    HELD: frozenset({OPEN, CLOSED}),
}

PAUSE = "pause"  # the move starts a pause of the response clock
RESUME = "resume"  # the move ends one: the deadline moves by the paused open time


class LifecycleError(TriageError, ValueError):
    """A change the ticket's state does not allow; the message names the ticket and the fix."""


@dataclass(frozen=True, slots=True)
class Move:
    """One allowed change of state and what it does to the clock (None: nothing)."""

    before: str
    after: str
    clock: str | None


def move(number: str, before: str, after: str, pauses: bool) -> Move:
    """The move of ticket `number` from `before` to `after`; LifecycleError if not allowed.

    `pauses`: the ticket's policy pauses its clock while pending.
    """
    if after not in STATES:
        raise LifecycleError(
            f"{number}: {after!r} is not a state; fix: use one of {', '.join(STATES)}"
        )
    allowed = ALLOWED.get(before, frozenset())
    if after == before:
        raise LifecycleError(f"{number} is already {after}; fix: nothing to do")
    if after not in allowed:
        can = [s for s in STATES if s in allowed]
        fix = f"move it to {can[0]} first" if len(can) == 1 else f"move it to {', '.join(can)}"
        raise LifecycleError(f"{number} is {before}: it cannot become {after}; fix: {fix}")
    clock = None
    if pauses and after == PENDING:
        clock = PAUSE
    elif before == PENDING:
        clock = RESUME
    return Move(before, after, clock)


def is_open(status: str) -> bool:
    """Counted as open: not resolved, not closed."""
    return status not in DONE


def paused_time(
    policy: sla_mod.Policy,
    plan: str | None,
    priority: str,
    tz: str,
    paused: datetime,
    resumed: datetime,
) -> int:
    """Microseconds of open time on the ticket's calendar between `paused` and `resumed`."""
    target = policy.target(plan, policy.rank_of(priority))
    cal = target.calendar
    zone = zone_named(tz if cal.zone is None else cal.zone, f"{policy.path}: [tz]")
    return cal.open_between(zone, to_us(paused), to_us(resumed))


def resumed_due(
    policy: sla_mod.Policy,
    plan: str | None,
    priority: str,
    tz: str,
    due: datetime | None,
    paused: datetime,
    resumed: datetime,
) -> datetime | None:
    """The deadline after a pause from `paused` to `resumed`: `due` moved later by the open
    time that passed meanwhile, counted on the ticket's calendar (None stays None; a
    deadline already passed when the pause began is not moved: a breach stays one)."""
    if due is None or due <= paused:  # a deadline passed before the pause stays passed
        return due
    target = policy.target(plan, policy.rank_of(priority))
    if target.kind == NONE:
        return due
    amount = paused_time(policy, plan, priority, tz, paused, resumed)
    if amount == 0:
        return due
    cal = target.calendar
    zone = zone_named(tz if cal.zone is None else cal.zone, f"{policy.path}: [tz]")
    # the deadline falls at the end of open time: moving it by open time keeps it there
    end, _timeline = cal.add_open(zone, to_us(due), amount)
    return from_us(end)


def first_response(email: Email, ticket: TicketRef, agent: bool) -> tuple[bool, str]:
    """(whether `email`, appended to `ticket`, is its first response; the line explain
    prints, or "" when it is no agent's mail).

    An authenticated agent's mail (`agent`, `routing.is_agent`) sent To or Cc the
    requester answers the ticket, once: a ticket already answered keeps its first response.
    """
    if not agent:
        return False, ""
    sender = email.from_addr
    if ticket.requester not in (*email.to, *email.cc):
        return False, (
            f"not counted: {sender} is our agent, but the mail is not addressed to the "
            f"requester {ticket.requester}"
        )
    if ticket.responded:
        return False, f"{ticket.number} was answered already; its first response stays"
    return True, f"recorded: our agent {sender} answered the requester {ticket.requester}"


@dataclass(frozen=True, slots=True)
class Reply:
    """What a customer's reply does to the state of the ticket it names."""

    thread: Thread  # the thread it takes (a new ticket linked to a long-closed one)
    reopened: str | None = None  # the state it ends (pending, resolved, closed), or None
    resumed_due: datetime | None = None  # the deadline once a paused clock runs again
    why: str = ""  # the line explain prints ("" when nothing changes)


def after_reply(
    thread: Thread,
    now: datetime,
    reopen_days: int,
    sender: str,
    policies: Mapping[str, sla_mod.Policy],
) -> Reply:
    """A customer's reply to a ticket that is pending, resolved or closed.

    Pending: the customer answered, so it is open again, and a paused clock runs again
    (its deadline moved by the open time that passed, on the ticket's own policy among
    `policies`, every policy of the SLA folder: the configured one may have changed since
    the ticket was opened). Resolved, or closed at most `reopen_days` ago
    ([tickets] reopen_days): reopened. Closed longer ago: a new ticket linked to it; the
    old conversation is over and its deadline long gone.
    """
    ref = thread.ticket
    if ref is None or ref.status not in (PENDING, *DONE):
        return Reply(thread)
    if ref.status == PENDING:
        if ref.paused_at is None:
            return Reply(thread, PENDING, None, f"{ref.number} was pending: {sender} answered")
        policy = policies.get(ref.policy or "")
        if policy is None or ref.priority is None or ref.due is None:
            missing = (
                f"policy {ref.policy}, which the SLA folder no longer holds"
                if policy is None
                else "a ticket with no priority or deadline"
            )
            return Reply(
                thread,
                why=f"{ref.number} stays pending: its clock is paused on {missing}; fix:"
                f" `triage ticket status {ref.number} open` moves its deadline",
            )
        due = instants.stored(ref.due)
        moved = resumed_due(
            policy,
            ref.plan,
            ref.priority,
            ref.timezone or "UTC",
            due,
            instants.stored(ref.paused_at),
            now,
        )
        when = f"deadline {instants.iso(due)} -> {instants.iso(moved) if moved else 'none'}"
        why = f"{ref.number} was pending, its clock paused: {sender} answered; {when}"
        return Reply(thread, PENDING, moved, why)
    if ref.status == CLOSED and ref.closed_at:
        closed = instants.stored(ref.closed_at)
        if now - closed > timedelta(days=reopen_days):
            why = (
                f"{ref.number} was closed at {instants.iso(closed)}, more than {reopen_days} "
                f"days ago ([tickets] reopen_days): new ticket linked to it"
            )
            return Reply(Thread(None, ref, f"{thread.why}; {why}"), why=why)
        when = f"closed at {instants.iso(closed)}, within {reopen_days} days"
    else:
        when = ref.status
    return Reply(thread, ref.status, None, f"{ref.number} was {when}: {sender}'s reply reopens it")
