"""Tickets as SLA tracking reads them, and the first response it writes.

Each function takes the Store and values and returns `Ticket` values (the columns
tracking needs, instants parsed), so another backend implements the same functions.
They run in the caller's transaction: `triage/service/tracking.py` reads and writes
under one write lock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from triage import instants
from triage.core.sla.tracking import Ticket, instant
from triage.store import schema

if TYPE_CHECKING:
    from triage.store.sqlite import Store


def _ticket(row: tuple) -> Ticket:
    """A row of the statements below -> Ticket. Each statement is written out whole (no SQL
    is assembled from pieces) and selects the same columns in this order."""
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
        paused=instant(row[11]),
    )


def every(store: Store) -> list[Ticket]:
    """All tickets, oldest first (the response report counts them)."""
    rows = store.conn.execute(
        "SELECT id, number, status, priority, level, policy, plan, timezone, response_due,"
        " created_at, first_response_at, paused_at FROM tickets ORDER BY id"
    ).fetchall()
    return [_ticket(r) for r in rows]


def outcome_counts(
    store: Store, now: datetime, since: datetime | None = None
) -> list[tuple[str | None, int | None, int, int, int, int, int]]:
    """(priority, level, tickets, no_target, within, late, breached) for tickets created at
    or after `since`, judged at `now`, as `tracking.outcome` judges one ticket (the rest are
    pending; `tracking.tally_counted` makes the report of them, adding up the rows of one
    priority).

    Counted here, in SQL: reading every ticket into Python cost seconds in a store with years
    in it. On SQLite, one pass over the index `tickets_outcomes` (migration 12), which holds
    each ticket's outcome computed, and a second over its range of unanswered tickets, the
    only ones whose instants are compared. On PostgreSQL, one pass comparing them.
    tests/test_tracking.py checks both against `tally`.
    """
    at = instants.iso(now)
    values = {"now": at, "since": instants.iso(since) if since else None}
    if store.dialect == "postgresql":
        return [
            (priority, level, n, no_target, answered & 0xFFFFFFFF, answered >> 32, breached)
            for priority, level, n, no_target, answered, breached in store.conn.execute(
                _OUTCOMES_POSTGRES, values
            ).fetchall()
        ]
    # The day before `since`'s: no instant at or after `since`, written in any offset (at
    # most a day from UTC), has an earlier date, so text before it is never in the window.
    floor = instants.iso(since - timedelta(days=1))[:10] if since else None
    rows = store.conn.execute(
        _OUTCOMES_SINCE if since else _OUTCOMES, {**values, "floor": floor}
    ).fetchall()
    counts: dict[tuple[str | None, int | None], list[int]] = {}
    for priority, level, outcome, n in rows:
        c = counts.setdefault((priority, level), [0, 0, 0, 0, 0])
        if outcome == BREACHED:
            c[4] += n
        else:
            c[0] += n
            if outcome in (0, 1, 2):  # no target, within, late; 3 is pending or breached
                c[1 + outcome] += n
    return [(priority, level, *c) for (priority, level), c in counts.items()]


def tracked(store: Store) -> list[Ticket]:
    """Unanswered tickets with a deadline, not resolved or closed, their clock not paused,
    oldest first: what warnings and breaches are about."""
    # The states written out as the partial index `tickets_open` names them (migration 10),
    # so the statement reads the open tickets only, not every ticket ever opened.
    rows = store.conn.execute(
        "SELECT id, number, status, priority, level, policy, plan, timezone, response_due,"
        " created_at, first_response_at, paused_at FROM tickets"
        " WHERE first_response_at IS NULL AND response_due IS NOT NULL"
        " AND status NOT IN ('resolved', 'closed') AND paused_at IS NULL ORDER BY id"
    ).fetchall()
    return [_ticket(r) for r in rows]


def by_number(store: Store, number: str) -> Ticket | None:
    """The ticket numbered `number` (e.g. T-000123), or None."""
    row = store.conn.execute(
        "SELECT id, number, status, priority, level, policy, plan, timezone, response_due,"
        " created_at, first_response_at, paused_at FROM tickets WHERE number = ?",
        (number,),
    ).fetchone()
    return _ticket(row) if row else None


def set_first_response(store: Store, ticket_id: int, at: datetime) -> bool:
    """Record the first response at `at`; a ticket already answered keeps its own (False)."""
    cur = store.conn.execute(
        "UPDATE tickets SET first_response_at = ? WHERE id = ? AND first_response_at IS NULL",
        (instants.iso(at), ticket_id),
    )
    return cur.rowcount == 1


# Rows of (priority, level, outcome, tickets): every ticket counted by its outcome as the
# index `tickets_outcomes` holds it (schema.RESPONSE_OUTCOME, the same expression, so SQLite
# reads it from the index and compares no instants), then the unanswered ones (outcome 3, a
# range of that index) breached at `now`, as outcome BREACHED. One statement, so one
# snapshot. With `since`, a ticket's creation is parsed only when its text is not before the
# window's `floor` (the date before `since`'s), not for every ticket ever opened.
BREACHED = 4


def _outcomes_sql(window: str) -> str:
    """The statement above; `window`: a condition on the tickets counted (`AND ...`), or ""."""
    where = f" WHERE {window.removeprefix(' AND ')}" if window else ""
    return (
        f"SELECT priority, level, {schema.RESPONSE_OUTCOME}, COUNT(*) FROM tickets{where}"
        f" GROUP BY {schema.RESPONSE_OUTCOME}, priority, level"
        " UNION ALL"
        f" SELECT priority, level, {BREACHED}, COUNT(*) FROM tickets"
        f" WHERE {schema.RESPONSE_OUTCOME} = 3{window}"
        "  AND julianday(response_due)"
        "   < min(julianday(:now), COALESCE(julianday(paused_at), julianday(:now)))"
        " GROUP BY priority, level"
    )


_OUTCOMES = _outcomes_sql("")
_OUTCOMES_SINCE = _outcomes_sql(
    " AND created_at >= :floor AND julianday(created_at) >= julianday(:since)"
)
# The counts on PostgreSQL (spelled by store/dialect.py), one row per priority: instants
# compared as timestamps, truth values counted by CASE, the two-argument min as LEAST, sums
# as BIGINT. Answered tickets are compared once each: within adds 1, late adds 2**32, so one
# sum carries both counts (a priority never has 2**32 tickets).
_OUTCOMES_POSTGRES = (
    "SELECT priority, MIN(level), COUNT(*),"
    " CAST(SUM(CASE WHEN response_due IS NULL THEN 1 ELSE 0 END) AS BIGINT),"
    " CAST(SUM(CASE WHEN response_due IS NULL OR first_response_at IS NULL THEN 0"
    "  WHEN CAST(first_response_at AS timestamptz) <= CAST(response_due AS timestamptz) THEN 1"
    "  ELSE 4294967296 END) AS BIGINT),"
    " CAST(COALESCE(SUM(CASE WHEN response_due IS NOT NULL AND first_response_at IS NULL"
    "  AND CAST(response_due AS timestamptz) < LEAST(CAST(:now AS timestamptz),"
    "   COALESCE(CAST(paused_at AS timestamptz), CAST(:now AS timestamptz)))"
    "  THEN 1 ELSE 0 END), 0) AS BIGINT)"
    " FROM tickets"
    " WHERE CAST(:since AS TEXT) IS NULL"
    "  OR CAST(created_at AS timestamptz) >= CAST(:since AS timestamptz)"
    " GROUP BY priority"
)
