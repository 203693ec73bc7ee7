"""Leases: which daemon holds a mailbox or a timer, until when. Pure rules, no clock.

Several daemons on one PostgreSQL database share the work through lease rows (name, owner,
expires_at; triage/store/leases.py reads and writes them). A lease is free when it has
expired; its holder renews it well before then (a third of the way through), so a daemon
that is alive keeps what it holds while one that died, or cannot reach the database, loses
it after the expiry and another daemon takes it. A holder whose renewal fails has lost the
lease: it stops touching what the lease guards before anything else.

Instants are written with a fixed width (microseconds always present) so that comparing
them as text, as both databases do, is comparing them as instants.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MIN_SECONDS = 3.0  # shorter: a renewal at a third would race the database's own latency
MAX_SECONDS = 3600.0  # longer: a dead daemon's mailboxes would wait an hour for another


def stamp(at: datetime) -> str:
    """`at` as a lease row stores it: UTC, microseconds, `Z` (fixed width: text order is
    time order)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def mailbox(name: str) -> str:
    """The lease that guards mailbox `name` ([[mailbox]] name)."""
    return f"mailbox:{name}"


def timer(name: str) -> str:
    """The lease that guards periodic timer `name` (the SLA check, the review digest ...)."""
    return f"timer:{name}"


@dataclass(frozen=True, slots=True)
class Term:
    """How long a lease lasts from its last renewal (`[daemon] lease_seconds`)."""

    seconds: float

    @classmethod
    def of(cls, seconds: float) -> Term:
        if not MIN_SECONDS <= seconds <= MAX_SECONDS:
            raise ValueError(f"a lease lasts {MIN_SECONDS:g} to {MAX_SECONDS:g} seconds")
        return cls(float(seconds))

    @property
    def renew_every(self) -> float:
        """Seconds between a holder's renewals: a third of the term, so two renewals may
        fail (a slow database, a lost packet) before the lease runs out."""
        return self.seconds / 3

    def until(self, at: datetime) -> datetime:
        """When a lease taken or renewed at `at` expires."""
        return at + timedelta(seconds=self.seconds)


@dataclass(frozen=True, slots=True)
class Held:
    """A lease row as it stands: who holds `name`, until when."""

    name: str
    owner: str
    expires_at: datetime

    def free_at(self, at: datetime) -> bool:
        """True when the lease has expired at `at`: anyone may take it."""
        return self.expires_at <= at

    def may_take(self, owner: str, at: datetime) -> bool:
        """The rule the store's single statement applies: `owner` takes (or renews) this
        lease when it holds it already or the lease has expired."""
        return self.owner == owner or self.free_at(at)
