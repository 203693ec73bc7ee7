"""Messages the pipeline could not handle: list them, and run one again after a fix.

Their bytes were kept beside the database when they were quarantined, so a
retry needs no mailbox: it runs today's rules over the same bytes and, when
they now succeed, replaces the quarantine record with the real decision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from triage.core.analysis import analyse
from triage.core.decision import Action, Decision
from triage.core.rules import Rules
from triage.engine.batch import write_batch
from triage.errors import TriageError
from triage.store import held
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
    out = []
    for id_, source, reason, at, key, decision in held.quarantined(store):
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
    row = held.message(store, message_id)
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
        held.forget_quarantined(store, message_id, key)
        # with its bytes: a decision for review keeps them too
        (decision,) = write_batch(store, rules, [analysis], now, [raw])
        if decision.action == Action.QUARANTINED:
            store.rollback()
            return decision
        store.commit()
    except BaseException:
        store.rollback()
        raise
    return decision
