"""What the daemon last made of its configuration: started, reloaded, or a reload rejected.

SIGHUP's reload keeps the old rules when the new ones do not load; that is
logged, and recorded here as an event, so `triage status` (another process,
perhaps hours later) can say the daemon runs on older rules, and why.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

from triage import instants, log
from triage.store.sqlite import Store

STARTED = "daemon_started"
RELOADED = "reloaded"
REJECTED = "reload_rejected"
_KINDS = (STARTED, RELOADED, REJECTED)


@dataclass(frozen=True, slots=True)
class Rejected:
    at: str
    error: str

    def as_json(self) -> dict:
        return {"at": self.at, "error": self.error}


def record(store: Store, kind: str, error: str = "") -> None:
    """An event of `kind` (autocommit: the daemon holds no batch open between awaits).

    Best effort: a database busy past its timeout costs the record, never the
    reload (the log line is written either way).
    """
    assert kind in _KINDS
    at = instants.iso_seconds(datetime.now(UTC))
    try:
        store.conn.execute(
            "INSERT INTO events (ticket_id, message_key, kind, at, detail)"
            " VALUES (NULL, NULL, ?, ?, ?)",
            (kind, at, json.dumps({"error": error[:2000]} if error else {})),
        )
    except sqlite3.Error as exc:
        log.get(component="daemon").warning("reload_record_failed", kind=kind, error=str(exc))


def rejected(store: Store) -> Rejected | None:
    """The reload rejection still in force: the latest of start, reload and rejection."""
    row = store.conn.execute(
        "SELECT kind, at, detail FROM events WHERE kind IN (?, ?, ?) ORDER BY id DESC LIMIT 1",
        _KINDS,
    ).fetchone()
    if row is None or row[0] != REJECTED:
        return None
    return Rejected(row[1], json.loads(row[2] or "{}").get("error", ""))
