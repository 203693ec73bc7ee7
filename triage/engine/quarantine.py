"""Messages the pipeline could not handle: list them, and run one again after a fix.

Their bytes were kept beside the database when they were quarantined, so a
retry needs no mailbox: it runs today's rules over the same bytes and, when
they now succeed, replaces the quarantine record with the real decision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from triage.core.pipeline import Action, Decision, Rules, analyse
from triage.engine.record import Recorder
from triage.errors import TriageError
from triage.store.sqlite import Store


@dataclass(frozen=True, slots=True)
class Quarantined:
    id: int
    source: str
    reason: str
    received_at: str
    message_key: str
    detail: str


def listing(store: Store) -> list[Quarantined]:
    rows = store.conn.execute(
        "SELECT id, source, reason, received_at, message_key, decision FROM messages"
        " WHERE action = 'quarantined' ORDER BY id"
    ).fetchall()
    out = []
    for id_, source, reason, at, key, decision in rows:
        detail = ""
        if decision and '"reasons"' in decision:
            reasons = json.loads(decision).get("reasons") or [""]
            detail = reasons[0]
        out.append(Quarantined(id_, source or "", reason or "", at, key, detail))
    return out


class RetryError(TriageError, ValueError):
    pass


def retry(store: Store, rules: Rules, message_id: int, now: datetime) -> Decision:
    """Run quarantined message `message_id` again; raises RetryError when it cannot be."""
    row = store.conn.execute(
        "SELECT id, source, message_key, action FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    if row is None:
        raise RetryError(
            f"no message {message_id}; fix: `triage errors` lists the quarantined ones"
        )
    _id, source, key, action = row
    if action != "quarantined":
        raise RetryError(f"message {message_id} is not quarantined (it was {action})")
    if not key.startswith("sha256:") or store.files is None:
        raise RetryError(
            f"message {message_id}: its bytes were never kept (e.g. over the size limit)"
        )
    path = store.files / "quarantine" / f"{key[7:]}.eml"
    if not path.is_file():
        raise RetryError(f"message {message_id}: {path} is missing")
    raw = path.read_bytes()
    analysis = analyse(raw, source or str(path), rules)
    store.begin()
    try:
        store.conn.execute(
            "DELETE FROM events WHERE message_key = ? AND kind = 'quarantined'", (key,)
        )
        store.conn.execute("DELETE FROM messages WHERE id = ?", (message_id,))
        recorder = Recorder(rules, store)
        decision = recorder.record(analysis, now, raw=raw)  # review keeps the bytes too
        if decision.action == Action.QUARANTINED:
            store.rollback()
            return decision
        recorder.commit()
    except BaseException:
        store.rollback()
        raise
    return decision
