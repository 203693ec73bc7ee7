"""What the report draws, read from the database: daily counts, breaches, filtered mail.

The report's table (`triage.service.tracking.report`) counts tickets per priority; the
charts also need series over days and companies. Everything is read in one read transaction, so the charts
and the table describe the same instant; the values are frozen and the drawing is pure
(`triage.desk.charts`).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from triage.core.sla import tracking
from triage.desk.objectives import Objective, for_policy
from triage.store.desk import queries

NO_COMPANY = "(no company)"
NO_POLICY = "(no policy)"
MAX_DAYS = 400  # a longer span is cut to its last MAX_DAYS days (say so with --since)


@dataclass(frozen=True, slots=True)
class Attainment:
    """First-response figures of one policy's tickets, per priority, and its objective."""

    policy: str
    objective: Objective
    rows: tuple[tracking.ReportRow, ...]


@dataclass(frozen=True, slots=True)
class Series:
    """The values every chart is drawn from."""

    now: datetime
    since: datetime | None
    timezone: str
    days: tuple[date, ...] = ()
    per_day: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # priority -> counts
    priorities: tuple[str, ...] = ()  # most urgent first
    breaches: tuple[tuple[str, int], ...] = ()  # (company, tickets breached), most first
    filtered: tuple[tuple[str, int], ...] = ()  # (reason, messages), most first
    attainment: tuple[Attainment, ...] = ()
    cut_days: int = 0  # days left out before `days` (MAX_DAYS)


def read(
    conn: sqlite3.Connection,
    report: tracking.Report,
    objectives: Mapping[str, Objective],
    timezone: str = "UTC",
) -> Series:
    """The series for `report` (its `now` and `since`), days counted in `timezone`.

    Read it in the same read transaction as `report`, so the two describe one instant.
    """
    zone = ZoneInfo(timezone)
    since_text = tracking.iso(report.since) if report.since else None
    tickets = queries.tickets_since(conn, since_text)
    levels: dict[str, int] = {}
    per_day: dict[str, Counter] = {}
    breaches: Counter = Counter()
    by_policy: dict[str, list[tracking.Ticket]] = {}
    for t, company in tickets:
        label = t.priority or tracking.NO_PRIORITY
        levels[label] = min(levels.get(label, 99), t.level if t.level is not None else 99)
        per_day.setdefault(label, Counter())[t.created.astimezone(zone).date()] += 1
        if tracking.outcome(t, report.now) in ("late", "breached"):
            breaches[company or NO_COMPANY] += 1
        by_policy.setdefault(t.policy or NO_POLICY, []).append(t)
    priorities = tuple(sorted(levels, key=lambda p: (levels[p], p)))
    days = _days(per_day, report, zone)
    cut = 0
    if len(days) > MAX_DAYS:
        cut, days = len(days) - MAX_DAYS, days[-MAX_DAYS:]
    filtered = queries.filtered_since(conn, since_text)
    attainment = tuple(
        Attainment(
            policy,
            for_policy(objectives, policy),
            tuple(tracking.tally(ts, report.now, report.since)[0]),
        )
        for policy, ts in sorted(by_policy.items())
    )
    return Series(
        now=report.now,
        since=report.since,
        timezone=timezone,
        days=days,
        per_day={p: tuple(per_day[p].get(d, 0) for d in days) for p in priorities},
        priorities=priorities,
        breaches=tuple(sorted(breaches.items(), key=lambda kv: (-kv[1], kv[0]))),
        filtered=tuple(sorted(((r or "(none)", n) for r, n in filtered), key=_most)),
        attainment=attainment,
        cut_days=cut,
    )


def _most(kv: tuple[str, int]) -> tuple[int, str]:
    return (-kv[1], kv[0])


def _days(
    per_day: Mapping[str, Counter], report: tracking.Report, zone: ZoneInfo
) -> tuple[date, ...]:
    """Every day from `since` (or the first ticket) to the report's day, quiet days included."""
    seen = [d for counts in per_day.values() for d in counts]
    last = report.now.astimezone(zone).date()
    first = report.since.astimezone(zone).date() if report.since else min(seen, default=last)
    if seen:
        last = max(last, max(seen))
    span = (last - first).days
    return tuple(first + timedelta(days=i) for i in range(span + 1))
