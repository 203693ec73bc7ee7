"""The audit trail's events about a ticket rather than a message: SLA warnings, breaches,
first responses.

Functions take the Store and values and return values, in the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime

from triage import instants
from triage.core.sla.tracking import BREACHED, WARNING
from triage.store import records
from triage.store.sqlite import Store


def sla_written(store: Store) -> dict[int, frozenset[str]]:
    """ticket id -> the SLA event kinds (`sla_warning`, `sla_breached`) already written."""
    out: dict[int, set[str]] = {}
    rows = store.conn.execute(
        "SELECT ticket_id, kind FROM events WHERE kind IN (?, ?) AND ticket_id IS NOT NULL",
        (WARNING, BREACHED),
    ).fetchall()
    for ticket_id, kind in rows:
        out.setdefault(ticket_id, set()).add(kind)
    return {k: frozenset(v) for k, v in out.items()}


def add(store: Store, ticket_id: int, kind: str, at: datetime, detail: dict) -> None:
    """One event about ticket `ticket_id` (no message), at `at`, with `detail` as JSON."""
    records.event(store, ticket_id, None, kind, instants.iso(at), detail)
