"""Stage two, shared by replay and the daemon: one analysed message into the open batch.

Deduplication lives here: a stored key is a duplicate only when the content
agrees (see `resolve_key`), so a re-fetch is a no-op and nothing is lost.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import replace
from datetime import datetime

from triage import log
from triage.core.message import Email
from triage.core.pipeline import Action, Analysis, Decision, Rules, decide, duplicate
from triage.core.replies import Ack, facts_for, render
from triage.store.sqlite import Store


class Recorder:
    """Writes decisions into `store`'s open batch; `committed()` after each commit."""

    def __init__(self, rules: Rules, store: Store) -> None:
        self.rules = rules
        self.store = store
        self.seen: dict[str, str] = {}  # keys written in the open batch -> fingerprint

    def record(self, analysis: Analysis, now: datetime, raw: bytes | None = None) -> Decision:
        """One message into the open batch; a failure that is this message's own quarantines it.

        An unexpected error while deciding or writing one message (its rows are
        rolled back) must not fail the batch: the same message would come back
        at every fetch and stall its mailbox. It is quarantined instead, with
        its bytes (`raw`) when the caller has them. A database or disk that
        fails is nobody's message: that error stops the batch.
        """
        self.store.begin()
        try:
            return _one(analysis, self.rules, self.store, now, self.seen, raw)
        except Exception as exc:
            if _systemic(exc):
                raise
            log.get(component="ingest").exception("message_store_failed", source=analysis.source)
            if raw is not None:
                sha = hashlib.sha256(raw).hexdigest()
            else:  # replay: the bytes stay in their file; the key still stops a second row
                sha = analysis.email.sha256 if analysis.email else analysis.raw_sha256
            failed = Analysis(
                analysis.source,
                None,
                "internal_error",
                f"{type(exc).__name__}: {exc}",
                raw_sha256=sha,
                raw=raw,
            )
            return _one(failed, self.rules, self.store, now, self.seen)

    def commit(self) -> None:
        self.store.commit()
        self.seen.clear()

    def release(self, analysis: Analysis, arrived: datetime, now: datetime) -> Decision:
        """A message a person let through, decided and written as on `arrived`; the
        acknowledgement is dated `now`. The caller removed its review row first."""
        self.store.begin()
        return _one(analysis, self.rules, self.store, arrived, self.seen, ack_at=now)


def _systemic(exc: Exception) -> bool:
    """An error of the database, the disk or the machine rather than of one message."""
    return (
        isinstance(exc, sqlite3.OperationalError | sqlite3.InternalError | OSError | MemoryError)
        or type(exc) is sqlite3.DatabaseError
    )  # "file is not a database", "malformed"


def log_decision(logger, d: Decision) -> None:
    """The one canonical line per message; never the body."""
    logger.info(
        "message_triaged",
        source=d.source,
        message_id=d.message_id,
        action=str(d.action),
        reason=d.reason,
        ticket=d.ticket,
        priority=d.priority,
        match=d.match,
        due=d.due.isoformat() if d.due else None,
        auto_reply=d.auto_reply,
    )


def resolve_key(email: Email, store: Store, seen: dict[str, str]) -> tuple[str, bool, str | None]:
    """(key, is_duplicate, note): a stored Message-ID is a duplicate only if the content agrees.

    A re-fetch or second delivery of one message is a no-op; a different message
    that reuses a Message-ID is kept under the ID plus its fingerprint. What an
    earlier release stored under its fingerprint (Date included) still counts.
    """
    key = email.key

    def stored_at(candidate: str) -> str | None:
        found = seen.get(candidate)
        return found if found is not None else store.fingerprint_of(candidate)

    first = stored_at(key)
    if first is None:
        return key, False, None
    ours = {email.fingerprint, email.old_fingerprint} - {""}
    if first == "" or first in ours or not email.message_id:
        return key, True, None
    for mark in (email.fingerprint, email.old_fingerprint):
        if mark and stored_at(f"{key}#{mark}") is not None:
            return f"{key}#{mark}", True, None
    return f"{key}#{email.fingerprint}", False, f"Message-ID {key} reused by a different message"


def _one(
    analysis: Analysis,
    rules: Rules,
    store: Store,
    now: datetime,
    seen: dict[str, str],
    raw: bytes | None = None,
    ack_at: datetime | None = None,
) -> Decision:
    """One message's rows. `ack_at`: when the acknowledgement is written, if not `now`
    (a released review: the deadline runs from arrival, the reply is dated today)."""
    email = analysis.email
    if email is not None:
        key, is_duplicate, note = resolve_key(email, store, seen)
        if is_duplicate:
            return duplicate(analysis)
        if note:
            email = replace(email, key=key)
            analysis = replace(analysis, email=email)
    else:
        note = None
        key = f"sha256:{analysis.raw_sha256}" if analysis.raw_sha256 else None
        if key and (key in seen or store.has_key(key)):
            return Decision(
                analysis.source,
                Action.DUPLICATE,
                key,
                None,
                reasons=("duplicate: the same unreadable bytes again",),
            )
    d = decide(analysis, rules, store, now)
    if d.action == Action.QUARANTINED:
        d = replace(d, message_key=key)
        if analysis.raw is not None and store.files is not None:
            store.save_quarantined(analysis.raw, analysis.raw_sha256)
    if d.action == Action.REVIEW and store.files is not None:
        kept = analysis.raw if analysis.raw is not None else raw
        if kept is not None:
            store.save_review(kept, email.sha256 if email is not None else analysis.raw_sha256)
    config = rules.config

    def ack(t: Decision) -> Ack:
        assert t.email is not None and t.ticket is not None
        return render(facts_for(t.email, t, config), rules.templates, config, ack_at or now)

    d = store.record(d, now, ack)
    if email is not None and note:
        d = replace(d, reasons=(*d.reasons, f"key: {note}; kept as {key}"))
    if key:
        seen[key] = email.fingerprint if email is not None else ""
    return d
