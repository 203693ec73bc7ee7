"""Deadlines: when a ticket of a priority on a plan is due, and how much of its time is used.

`due` returns the deadline with its walk, the lines `triage explain` and
`triage sla due` print (`triage.core.sla.explanation`). Pure: the arrival and
the ticket's zone are arguments; nothing reads the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from triage.core.sla.calendars import SlaError, from_us, to_us
from triage.core.sla.explanation import stamp, walk_days, walk_hours
from triage.core.sla.notation import HOURS, NONE, zone_named
from triage.core.sla.policies import Policy, Target


@dataclass(frozen=True, slots=True)
class Deadline:
    due: datetime | None  # aware, UTC; None: no deadline (best effort, user scheduled)
    policy: str
    plan: str | None
    label: str  # the policy's own label, e.g. "P2", "1 - Urgent"
    rank: int  # 1 = most urgent in the policy's own scale
    calendar: str
    target: str  # as written, e.g. "4h", "3 business days", "none"
    walk: tuple[str, ...]


def _resolve(
    policy: Policy, plan: str | None, rank: int, at: datetime, tz: str
) -> tuple[Target, ZoneInfo, int]:
    """Checks shared by due() and progress(): target, zone, arrival in µs."""
    target = policy.target(plan, rank)
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise SlaError(
            f"{policy.path}: [at] {at!r} has no time zone; "
            "fix: pass an aware datetime, e.g. datetime(..., tzinfo=UTC)"
        )
    tz_zone = zone_named(tz, f"{policy.path}: [tz]")  # checked even when the calendar pins one
    cal = target.calendar
    zone = tz_zone if cal.zone is None else zone_named(cal.zone, cal.where)
    return target, zone, to_us(at)


def due(policy: Policy, plan: str | None, rank: int, at: datetime, tz: str = "UTC") -> Deadline:
    """Deadline of a ticket of `rank` on `plan` (None: the policy's default) arriving `at`.

    `tz` is the ticket's zone (from its contact or the config); calendars that
    their source pins to a zone ignore it.
    """
    target, zone, t = _resolve(policy, plan, rank, at, tz)
    chosen = policy.plan(plan).name
    cal = target.calendar
    head = f"{target.label} on {'plan ' + chosen if chosen else policy.name}: {target.text}"
    head += f" on calendar {cal.name} ({zone.key})"
    if target.kind == NONE:
        walk: tuple[str, ...] = (f"{head}: no deadline (best effort / user scheduled)",)
        at_utc = None
    elif target.amount == 0:
        walk = (f"{head}: immediate, due at arrival {stamp(t, zone)}",)
        at_utc = from_us(t)
    elif target.kind == HOURS:
        d, tl = cal.add_open(zone, t, target.amount)
        walk = (head, *walk_hours(tl, zone, t, d), f"due {stamp(d, zone)}")
        at_utc = from_us(d)
    else:
        bd = cal.add_business_days(zone, t, target.amount)
        walk = (head, *walk_days(bd, zone, t), f"due {stamp(bd.due, zone)}")
        at_utc = from_us(bd.due)
    return Deadline(
        due=at_utc,
        policy=policy.name,
        plan=chosen,
        label=target.label,
        rank=rank,
        calendar=cal.name,
        target=target.text,
        walk=walk,
    )


def progress(
    policy: Policy,
    plan: str | None,
    rank: int,
    received: datetime,
    now: datetime,
    tz: str = "UTC",
) -> float | None:
    """Fraction of the allowed open time used by `now` (1.0 = due; above = late).

    None when the target has no deadline. An immediate target is 0.0 before
    arrival and 1.0 from then on.
    """
    target, zone, t = _resolve(policy, plan, rank, received, tz)
    if target.kind == NONE:
        return None
    n = to_us(now)
    cal = target.calendar
    if target.kind == HOURS or target.amount == 0:
        allowed = target.amount
    else:
        allowed = cal.open_between(zone, t, cal.add_business_days(zone, t, target.amount).due)
    if allowed == 0:
        return 1.0 if n >= t else 0.0
    return cal.open_between(zone, t, n) / allowed
