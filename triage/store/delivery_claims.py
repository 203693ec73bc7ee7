"""The drainer's side of the `deliveries` table: claims with a lease, marks, give-backs.

Split from triage/store/deliveries.py (the queueing side and the listings): a claim holds a
row for one drainer until its lease ends, so two daemons, or a daemon and `triage outbox send
--once`, never deliver one row twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from triage import instants
from triage.sinks.events import Event
from triage.store import outbox
from triage.store.deliveries import stamp

if TYPE_CHECKING:
    from triage.store.sqlite import Store


@dataclass(frozen=True, slots=True)
class Row:
    """A claimed delivery: what the sink needs, and how many attempts came before."""

    id: int
    sink: str
    delivery_id: str
    event: Event
    attempts: int  # made before this one

    @classmethod
    def from_db(cls, row: tuple) -> Row:
        row_id, sink, did, event, attempts = row
        return cls(row_id, sink, did, Event.from_json(event), attempts or 0)


def recover(store: Store) -> int:
    """Give back the claims of drainers on this host whose process is gone; how many rows."""
    return outbox.recover(store, "deliveries")


def claim(
    store: Store,
    limits: dict[str, int],
    owner: str,
    at: datetime,
    lease: timedelta,
) -> list[Row]:
    """Due rows of each sink named in `limits` (at most that many each), claimed for
    `owner` until `at + lease`, oldest first. One write transaction: two drainers never
    claim one row (on PostgreSQL: one statement per sink, its rows chosen `FOR UPDATE SKIP
    LOCKED`, so drainers claiming at once take different rows and never wait)."""
    conn = store.conn
    now, until = stamp(at), stamp(at + lease)
    sql = _CLAIM_POSTGRES if store.dialect == "postgresql" else _CLAIM

    def each_sink() -> list[Row]:
        out: list[Row] = []
        for sink, limit in limits.items():
            got = conn.execute(sql, (owner, until, sink, now, now, limit)).fetchall()
            out += [Row.from_db(r) for r in got]
        return sorted(out, key=lambda r: r.id)

    if store.dialect == "postgresql":  # each statement its own transaction, rows locked
        return each_sink()
    conn.execute("BEGIN IMMEDIATE")
    try:
        out = each_sink()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return out


_CLAIM = (
    "UPDATE deliveries SET status = 'sending', claimed_by = ?, lease_until = ?"
    " WHERE id IN (SELECT id FROM deliveries WHERE sink = ? AND"
    " ((status = 'pending' AND next_attempt_at <= ?)"
    " OR (status = 'sending' AND lease_until <= ?)) ORDER BY id LIMIT ?)"
    " RETURNING id, sink, delivery_id, event, attempts"
)
# The same, its rows chosen FOR UPDATE SKIP LOCKED: a drainer claiming at once skips them.
_CLAIM_POSTGRES = _CLAIM.replace(" LIMIT ?)", " LIMIT ? FOR UPDATE SKIP LOCKED)")


def finish(
    store: Store,
    row_id: int,
    owner: str,
    state: str,
    attempts: int,
    at: datetime,
    next_at: datetime | None,
    said: str,
    code: int | None,
    remote: str | None,
) -> bool:
    """Record an attempt's outcome on a row this owner holds; False when the claim was lost
    (the lease ran out and another drainer took it)."""
    conn = store.conn
    done = conn.execute(
        "UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?, last_error = ?,"
        " last_code = ?, remote = COALESCE(?, remote), sent_at = ?, claimed_by = NULL,"
        " lease_until = NULL WHERE id = ? AND status = 'sending' AND claimed_by = ?",
        (
            state,
            attempts,
            stamp(next_at) if next_at else None,
            None if state == "sent" else said[:500],
            code,
            remote,
            stamp(at) if state == "sent" else None,
            row_id,
            owner,
        ),
    )
    return done.rowcount == 1


def next_due(store: Store, sinks: Sequence[str]) -> datetime | None:
    """When the earliest pending row of these sinks is due (or a claim's lease runs out)."""
    conn = store.conn
    if not sinks:
        return None
    row = conn.execute(
        "SELECT MIN(CASE status WHEN 'pending' THEN next_attempt_at ELSE lease_until END)"
        " FROM deliveries WHERE status IN ('pending', 'sending')"
        " AND sink IN (SELECT value FROM json_each(?))",
        (json.dumps(list(sinks)),),
    ).fetchone()
    return instants.stored(row[0]) if row and row[0] else None


# -- what commands list and change --------------------------------------------------------


def release(store: Store, row_ids: Sequence[int], owner: str) -> None:
    """Give claimed rows back untouched (the drainer is stopping before trying them)."""
    conn = store.conn
    conn.executemany(
        "UPDATE deliveries SET status = 'pending', claimed_by = NULL, lease_until = NULL"
        " WHERE id = ? AND status = 'sending' AND claimed_by = ?",
        [(row_id, owner) for row_id in row_ids],
    )
