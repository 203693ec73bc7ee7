"""The outbox drainer: queued acknowledgements and operator alerts out over SMTP, each row once.

A row is written in the same transaction as its ticket. A drainer claims a row before sending
it (status `sending`, its owner, a lease expiry) in one transaction, so two drainers (the
daemon and `triage outbox send --once`, or two of either) never send one row. It marks the
row `sent` only after the relay accepted it. A claim whose drainer died comes back: at once
when that drainer ran on this host and its process is gone, else when the lease runs out.

Operator alerts go before acknowledgements. A row's own failure (a refused recipient, an
address the relay cannot carry) fails or defers that row, and the round goes on with the
next; a failure of the relay (connection, TLS, login) stops the round and leaves every row
queued as it was. The relay's health is kept in `relay_state` for `triage status`, and its
changes are logged as `relay_failing` and `relay_recovered`.

Delivery is at least once: if the process dies after the relay accepted a message but before
the row was marked, the message is sent again (with the same Message-ID) when the claim
comes back.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from triage import instants, log
from triage.sinks.smtp import RelayError, RowError, Sender, stamped
from triage.store.sqlite import Store

__all__ = ["Result", "Sender", "drain", "ensure", "mark_sent", "relay_health", "retry"]

RETRY_BASE = 30.0  # seconds; doubled per attempt
RETRY_MAX = 3600.0
GIVE_UP = timedelta(days=5)  # a row failing only for now this long after it was queued fails
RELAY = "smtp"  # the key of the relay's row in relay_state


def _iso(value: datetime) -> str:
    return instants.iso_seconds(value)


def ensure(store: Store) -> None:
    have = set(store.db["outbox"].columns_dict)
    if "next_attempt_at" not in have:
        store.db["outbox"].add_column("next_attempt_at", str)
    if "envelope_from" not in have:
        store.db["outbox"].add_column("envelope_from", str)


@dataclass(frozen=True, slots=True)
class Result:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    relay_error: str | None = None  # the relay failed: the round stopped, the rows wait
    reached: bool = False  # the relay was connected to (and logged in to) this round


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
    conn.execute("BEGIN IMMEDIATE")
    try:
        got = conn.execute(
            "UPDATE outbox SET status = 'sending', claimed_by = ?, lease_until = ?"
            " WHERE id = (SELECT id FROM outbox WHERE status IN ('pending', 'sending') AND"
            " ((status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?))"
            " OR (status = 'sending' AND lease_until <= ?))"
            " ORDER BY ticket_id IS NOT NULL, id LIMIT 1)"
            " RETURNING id, to_addr, raw, attempts, created_at",
            (owner, _iso(at + lease), now, now),
        ).fetchall()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return Row.from_db(got[0]) if got else None


def _gone(owner: str, host: str) -> bool:
    """True when `owner` ran on this host and its process no longer exists."""
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


def recover(store: Store) -> int:
    """Give back the claims of drainers on this host that died; the number of rows."""
    host = socket.gethostname()
    owners = [
        r[0]
        for r in store.conn.execute(
            "SELECT DISTINCT claimed_by FROM outbox WHERE status = 'sending'"
        ).fetchall()
        if r[0]
    ]
    back = 0
    for owner in owners:
        if _gone(owner, host):
            back += store.conn.execute(
                "UPDATE outbox SET status = 'pending', claimed_by = NULL, lease_until = NULL"
                " WHERE status = 'sending' AND claimed_by = ?",
                (owner,),
            ).rowcount
    return back


async def drain(
    store: Store,
    sender: Sender,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    limit: int = 100,
    lock=None,
    owner: str | None = None,
    stop=None,
) -> Result:
    """Claim and send up to `limit` due rows, one at a time; return what happened.

    `lock` (an asyncio.Lock) guards a database connection shared with the daemon's
    batches: it is held while rows are claimed and marked, never while talking to the relay.
    `stop` (an asyncio.Event): once set, no further row is claimed.
    """
    logger = log.get(component="outbox")
    owner = owner or sender.owner
    guard = lock or contextlib.nullcontext()
    async with guard:
        back = recover(store)
    if back:
        logger.info("outbox_claims_recovered", rows=back)
    session = sender.session()
    sent = deferred = failed = 0
    relay_error: RelayError | None = None
    try:
        for _ in range(limit):
            if stop is not None and stop.is_set():
                break
            async with guard:
                row = claim(store, owner, now(), sender.lease)
            if row is None:
                break
            try:
                await session.send(row.to, stamped(row.raw, now(), sender.domain))
            except RelayError as exc:
                async with guard:
                    release(store, row.id, owner)
                relay_error = exc
                break
            except Exception as exc:  # noqa: BLE001 - every other failure is this row's
                problem = exc if isinstance(exc, RowError) else RowError(False, f"{exc!r}")
                permanent, said = _verdict(row, problem, now())
                async with guard:
                    _record_failure(store, row, owner, permanent, said, now())
                if permanent:
                    logger.warning("outbox_failed", row=row.id, to=row.to, error=said)
                    failed += 1
                else:
                    logger.info(
                        "outbox_deferred",
                        row=row.id,
                        to=row.to,
                        error=said,
                        attempt=row.attempts + 1,
                    )
                    deferred += 1
                continue
            async with guard:
                mark_sent(store, row.id, now(), owner)
            logger.info("auto_reply_sent", row=row.id, to=row.to)
            sent += 1
    finally:
        await session.close()
    async with guard:
        change = _record_relay(store, relay_error, session.reached, now())
    _log_relay(logger, change, relay_error, sender)
    return Result(
        sent, deferred, failed, relay_error.said if relay_error else None, session.reached
    )


def _log_relay(logger, change: str | None, error: RelayError | None, sender: Sender) -> None:
    where = f"{sender.smtp.host}:{sender.smtp.port}"
    if change == "failing" and error is not None:
        logger.error("relay_failing", relay=where, kind=error.kind, error=error.said)
    elif error is not None:
        logger.info("relay_still_failing", relay=where, kind=error.kind, error=error.said)
    elif change == "recovered":
        logger.info("relay_recovered", relay=where)


def _verdict(row: Row, problem: RowError, at: datetime) -> tuple[bool, str]:
    """(permanent, what to record): a row failing only for now is given up after GIVE_UP."""
    if problem.permanent or row.queued_at is None or at - row.queued_at < GIVE_UP:
        return problem.permanent, problem.said
    return True, (
        f"{problem.said[:300]} (gave up: failing since it was queued"
        f" {row.queued_at:%Y-%m-%d %H:%M} UTC, {row.attempts + 1} attempts; fix: correct the"
        " cause, then `triage outbox retry`)"
    )


def _record_failure(
    store: Store, row: Row, owner: str, permanent: bool, said: str, at: datetime
) -> None:
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
        " WHERE id = ? AND (? IS NULL OR claimed_by = ?)",
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


# -- the relay's health, shared by every drainer through the database ------------------


def _record_relay(
    store: Store, error: RelayError | None, reached: bool, at: datetime
) -> str | None:
    """Record this round's verdict; "failing" or "recovered" when the state changed."""
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
