"""The acknowledgement outbox's SQL: claims with a lease, marks, retries, the relay's health.

The SMTP drainer (triage/sinks/outbox.py) decides what to do with a row; this module is the
only place its rows are read and written. A claim is one write transaction (choose and mark
together), so two drainers never hold one row; a claim whose drainer died on this host comes
back at once (`recover`), one whose drainer is elsewhere when its lease runs out.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from triage import instants, log

if TYPE_CHECKING:
    from triage.store.sqlite import Store

RETRY_BASE = 30.0  # seconds; doubled per attempt
RETRY_MAX = 3600.0
RELAY = "smtp"  # the key of the relay's row in relay_state


def _iso(value: datetime) -> str:
    return instants.iso_seconds(value)


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    to: str
    raw: bytes
    attempts: int
    queued_at: datetime | None

    @classmethod
    def from_db(cls, row: tuple) -> Row:
        row_id, to, raw, attempts, created = row
        try:
            queued = instants.stored(str(created))
        except ValueError:
            queued = None
        raw = raw.encode("utf-8") if isinstance(raw, str) else raw
        return cls(row_id, to, raw, attempts or 0, queued)


def claim(store: Store, owner: str, at: datetime, lease: timedelta) -> Row | None:
    """The next due row, claimed for `owner` until `at + lease`; None when nothing is due.

    Due: pending and past its backoff, or claimed by a drainer whose lease ran out. Alerts
    (rows without a ticket) first, then by age. One write transaction: no one else can
    claim between the choice and the mark.
    """
    now = _iso(at)
    conn = store.conn
    values = (owner, _iso(at + lease), now, now)
    if store.dialect == "postgresql":  # one statement; a row another drainer locked is skipped
        got = conn.execute(_CLAIM_POSTGRES, values).fetchall()
        return Row.from_db(got[0]) if got else None
    conn.execute("BEGIN IMMEDIATE")
    try:
        got = conn.execute(_CLAIM, values).fetchall()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return Row.from_db(got[0]) if got else None


_CLAIM = (
    "UPDATE outbox SET status = 'sending', claimed_by = ?, lease_until = ?"
    " WHERE id = (SELECT id FROM outbox WHERE status IN ('pending', 'sending') AND"
    " ((status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?))"
    " OR (status = 'sending' AND lease_until <= ?))"
    " ORDER BY ticket_id IS NOT NULL, id LIMIT 1)"
    " RETURNING id, to_addr, raw, attempts, created_at"
)
# The same on PostgreSQL, the row chosen FOR UPDATE SKIP LOCKED: two drainers (two daemons,
# or a daemon and `outbox send --once`) claiming at once each get a different row, neither
# waiting for the other.
_CLAIM_POSTGRES = _CLAIM.replace(" LIMIT 1)", " LIMIT 1 FOR UPDATE SKIP LOCKED)")


def owner_id() -> str:
    """Who claims rows, as `gone` reads it: host, pid, and a token for this sender."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def gone(owner: str, host: str) -> bool:
    """True when `owner` (host:pid:token) ran on this host and its process no longer exists."""
    where, _, rest = owner.rpartition(":")[0].rpartition(":")
    if where != host:
        return False
    try:
        os.kill(int(rest), 0)
    except ProcessLookupError:
        return True
    except (ValueError, OSError):  # not ours to signal, or not a pid: assume it lives
        return False
    return False


# The two tables drained under leases: who holds claims, and giving one owner's back.
_CLAIMS = {
    "outbox": (
        "SELECT DISTINCT claimed_by FROM outbox WHERE status = 'sending'",
        "UPDATE outbox SET status = 'pending', claimed_by = NULL, lease_until = NULL"
        " WHERE status = 'sending' AND claimed_by = ?",
    ),
    "deliveries": (
        "SELECT DISTINCT claimed_by FROM deliveries WHERE status = 'sending'",
        "UPDATE deliveries SET status = 'pending', claimed_by = NULL, lease_until = NULL"
        " WHERE status = 'sending' AND claimed_by = ?",
    ),
}


def recover(store: Store, table: str = "outbox") -> int:
    """Give back the claims of drainers on this host that died (in the outbox, or the sink
    `deliveries`); the number of rows."""
    owners_sql, give_back = _CLAIMS[table]
    host = socket.gethostname()
    owners = [r[0] for r in store.conn.execute(owners_sql).fetchall() if r[0]]
    return sum(
        store.conn.execute(give_back, (owner,)).rowcount for owner in owners if gone(owner, host)
    )


def record_failure(
    store: Store, row: Row, owner: str, permanent: bool, said: str, at: datetime
) -> None:
    """A failed attempt: the row fails for good, or waits (doubling from RETRY_BASE)."""
    if permanent:
        store.conn.execute(
            "UPDATE outbox SET status = 'failed', attempts = ?, last_error = ?,"
            " claimed_by = NULL, lease_until = NULL WHERE id = ? AND claimed_by = ?",
            (row.attempts + 1, said[:500], row.id, owner),
        )
        return
    wait = min(RETRY_MAX, RETRY_BASE * 2**row.attempts)
    store.conn.execute(
        "UPDATE outbox SET status = 'pending', attempts = ?, last_error = ?, next_attempt_at = ?,"
        " claimed_by = NULL, lease_until = NULL WHERE id = ? AND claimed_by = ?",
        (row.attempts + 1, said[:500], _iso(at + timedelta(seconds=wait)), row.id, owner),
    )


def release(store: Store, row_id: int, owner: str) -> None:
    """Give a claimed row back untouched (the relay failed, not the row)."""
    store.conn.execute(
        "UPDATE outbox SET status = 'pending', claimed_by = NULL, lease_until = NULL"
        " WHERE id = ? AND status = 'sending' AND claimed_by = ?",
        (row_id, owner),
    )


def mark_sent(store: Store, row_id: int, at: datetime, owner: str | None = None) -> None:
    """The relay accepted row `row_id`: `sent`, with an `auto_reply_sent` event."""
    done = store.conn.execute(
        "UPDATE outbox SET status = 'sent', sent_at = ?, claimed_by = NULL, lease_until = NULL"
        " WHERE id = ? AND (CAST(? AS TEXT) IS NULL OR claimed_by = ?)",
        (_iso(at), row_id, owner, owner),
    )
    if done.rowcount != 1:  # our lease ran out and another drainer took the row
        log.get(component="outbox").warning("outbox_claim_lost", row=row_id, owner=owner)
        return
    store.conn.execute(
        "INSERT INTO events (ticket_id, message_key, kind, at, detail)"
        " SELECT ticket_id, NULL, 'auto_reply_sent', ?, json_object('outbox', id, 'to', to_addr) FROM outbox WHERE id = ?",
        (_iso(at), row_id),
    )


def retry(store: Store, row_id: int) -> bool:
    """Put a failed row back in the queue; False when there is no such failed row."""
    cur = store.conn.execute(
        "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = NULL"
        " WHERE id = ? AND status = 'failed'",
        (row_id,),
    )
    return cur.rowcount == 1


def drop(store: Store, row_id: int) -> bool:
    """Never send row `row_id` (pending or failed): it stays, marked `dropped`."""
    cur = store.conn.execute(
        "UPDATE outbox SET status = 'dropped', claimed_by = NULL, lease_until = NULL"
        " WHERE id = ? AND status IN ('pending', 'failed')",
        (row_id,),
    )
    return cur.rowcount == 1


# -- the relay's health, shared by every drainer through the database ------------------


def record_relay(store: Store, error, reached: bool, at: datetime) -> str | None:
    """Record this round's verdict (`error`: a RelayError or None); "failing" or
    "recovered" when the state changed."""
    row = store.conn.execute("SELECT failing FROM relay_state WHERE relay = ?", (RELAY,)).fetchone()
    was_failing = bool(row and row[0])
    when = _iso(at)
    if error is not None:
        store.conn.execute(
            "INSERT INTO relay_state (relay, failing, failing_since, failures, kind, last_error,"
            " updated_at) VALUES (?, 1, ?, 1, ?, ?, ?) ON CONFLICT(relay) DO UPDATE SET"
            " failing = 1, failing_since = CASE WHEN relay_state.failing = 1"
            " THEN relay_state.failing_since ELSE excluded.failing_since END,"
            " failures = COALESCE(relay_state.failures, 0) + 1, kind = excluded.kind,"
            " last_error = excluded.last_error, updated_at = excluded.updated_at",
            (RELAY, when, error.kind, error.said[:500], when),
        )
        return None if was_failing else "failing"
    if not reached:
        return None  # nothing was due: nothing learnt
    store.conn.execute(
        "INSERT INTO relay_state (relay, failing, failures, last_ok_at, updated_at)"
        " VALUES (?, 0, 0, ?, ?) ON CONFLICT(relay) DO UPDATE SET failing = 0,"
        " failing_since = NULL, failures = 0, last_ok_at = excluded.last_ok_at,"
        " updated_at = excluded.updated_at",
        (RELAY, when, when),
    )
    return "recovered" if was_failing else None


def relay_health(store: Store) -> dict | None:
    """The relay's recorded health (failing, failing_since, failures, kind, last_error,
    last_ok_at), or None before any drainer reached or failed to reach it."""
    rows = list(
        store.db.query(
            "SELECT failing, failing_since, failures, kind, last_error, last_ok_at, updated_at"
            " FROM relay_state WHERE relay = ?",
            (RELAY,),
        )
    )
    if not rows:
        return None
    health = rows[0]
    health["failing"] = bool(health["failing"])
    return health
