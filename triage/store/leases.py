"""Lease rows (triage/core/leases.py says what they mean): take, renew, release, read.

Each is one statement, atomic on SQLite and on PostgreSQL alike: the insert-or-update
takes the lease only where it is free or already ours (`Held.may_take`), and its row count
says whether it did. Never a session advisory lock: connection poolers hand a session to
another client, and a lock tied to a session dies or lingers with it.

The instants are the caller's clock, as the outbox's claims are: daemons on several
machines need their clocks in step (NTP), to well under the lease's term.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from triage import instants
from triage.core.leases import Held, Term, stamp

if TYPE_CHECKING:
    from triage.store.sqlite import Store


def take(store: Store, name: str, owner: str, at: datetime, term: Term) -> datetime | None:
    """Take lease `name` for `owner` at `at`, or renew it when `owner` holds it: its new
    expiry, or None when another owner holds it and it has not expired (for a holder
    renewing: the lease was lost, taken by another after it expired)."""
    until = term.until(at)
    done = store.conn.execute(
        "INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
        " expires_at = excluded.expires_at"
        " WHERE leases.owner = excluded.owner OR leases.expires_at <= ?",
        (name, owner, stamp(until), stamp(at)),
    )
    return until if done.rowcount == 1 else None


renew = take  # the same rule: ours already, or free


def release(store: Store, name: str, owner: str) -> bool:
    """Give lease `name` up at once (a daemon stopping), so another need not wait for its
    expiry; False when `owner` did not hold it."""
    done = store.conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))
    return done.rowcount == 1


def held(store: Store, name: str) -> Held | None:
    """Lease `name` as it stands (expired or not), or None when no one ever took it or it
    was released."""
    row = store.conn.execute(
        "SELECT name, owner, expires_at FROM leases WHERE name = ?", (name,)
    ).fetchone()
    return Held(row[0], row[1], instants.stored(row[2])) if row else None


def held_by(store: Store, owner: str, at: datetime) -> list[str]:
    """The names of the leases `owner` holds at `at` (not expired), in order."""
    return sorted(name for name, holder in holders(store, at).items() if holder == owner)


def holders(store: Store, at: datetime) -> dict[str, str]:
    """Every lease held at `at` (not expired): name -> owner."""
    rows = store.conn.execute(
        "SELECT name, owner FROM leases WHERE expires_at > ?", (stamp(at),)
    ).fetchall()
    return {r[0]: r[1] for r in rows}
