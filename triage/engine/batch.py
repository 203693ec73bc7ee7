"""Steps 2-5 for one batch of analysed messages: facts, decide, render, write, commit.

The one path every way in uses (replay, the daemon, `errors retry`, `review
release`): the facts are read once, inside the batch's write transaction, and
each message is decided against them, rendered with fresh ids, written, and the
facts carried forward to the next (`Facts.after`), so a message sees a ticket
opened two messages before it. The caller acknowledges the messages to their
source only after `run_batch` returns: after the commit.

A failure that is one message's own quarantines that message, with none of its
rows; the batch goes on. A batch is first written without a savepoint per message
(a savepoint journals, as they were, the pages its message changes: about 4 % of
the writing process's instructions); when a message fails on its own,
that try is rolled back whole and the batch written again, each message in its own
savepoint, so only the failing one is quarantined. A database or disk that fails is
nobody's message: that error stops the batch, nothing of it is committed, and it
comes back.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from triage import log
from triage.core.analysis import Analysis
from triage.core.decide import decide
from triage.core.decision import Action, Decision
from triage.core.facts import Facts, needs
from triage.core.outgoing import Rendered, render, wants_ack
from triage.core.rules import Rules
from triage.engine.ids import ack_ids
from triage.store import messages, records
from triage.store.facts import read as read_facts
from triage.store.sqlite import Store


def run_batch(
    store: Store,
    rules: Rules,
    analyses: Sequence[Analysis],
    now: datetime,
    raws: Sequence[bytes | None] | None = None,
) -> list[Decision]:
    """Decide and write `analyses` in one transaction, and commit it; the decisions, in order.

    `raws`: each message's bytes where the caller has them (kept for quarantine and review).
    """
    try:
        decisions = write_batch(store, rules, analyses, now, raws)
        store.commit()
    except BaseException:
        store.rollback()
        raise
    return decisions


def write_batch(
    store: Store,
    rules: Rules,
    analyses: Sequence[Analysis],
    now: datetime,
    raws: Sequence[bytes | None] | None = None,
    ack_at: datetime | None = None,
) -> list[Decision]:
    """Steps 2-5 without the commit, in the open transaction (begun here if none is).

    `ack_at`: when the acknowledgements are dated, if not `now` (a released review: its
    deadline runs from arrival, the reply is dated today). For callers that check the
    decisions before they commit (`errors retry`, `review release`).
    """
    if not analyses:
        return []
    if not store.in_batch:  # the whole transaction is this batch's: it may be tried again
        store.begin()
        try:
            return _write_all(store, rules, analyses, now, raws, ack_at, careful=False)
        except Exception as exc:
            if _systemic(store, exc):
                raise
            store.rollback()  # one message failed on its own: again, a savepoint each
        store.begin()
    return _write_all(store, rules, analyses, now, raws, ack_at, careful=True)


def _write_all(
    store: Store,
    rules: Rules,
    analyses: Sequence[Analysis],
    now: datetime,
    raws: Sequence[bytes | None] | None,
    ack_at: datetime | None,
    careful: bool,
) -> list[Decision]:
    """Every message of the batch; `careful`: each in a savepoint, a failing one quarantined
    (else the first failure is raised, with the rows of those before it in the transaction)."""
    facts = read_facts(store, needs(analyses, rules.config.ticket_prefix), now)
    out: list[Decision] = []
    for n, analysis in enumerate(analyses):
        raw = raws[n] if raws is not None else None
        try:
            d, facts = _one(store, rules, analysis, facts, now, raw, ack_at, careful)
        except Exception as exc:
            if not careful or _systemic(store, exc):
                raise
            log.get(component="ingest").exception("message_store_failed", source=analysis.source)
            d, facts = _one(store, rules, _failed(analysis, raw, exc), facts, now, raw, ack_at)
        out.append(d)
    return out


def _one(
    store: Store,
    rules: Rules,
    analysis: Analysis,
    facts: Facts,
    now: datetime,
    raw: bytes | None,
    ack_at: datetime | None,
    savepoint: bool = True,
) -> tuple[Decision, Facts]:
    """One message decided, its bytes kept if it needs them, rendered and written."""
    d = decide(analysis, facts, rules, now)
    if d.action == Action.QUARANTINED:
        if analysis.raw is not None and store.files is not None:
            store.save_quarantined(analysis.raw, analysis.raw_sha256)
    elif d.action == Action.REVIEW and store.files is not None:
        kept = analysis.raw if analysis.raw is not None else raw
        if kept is not None:
            email = analysis.email
            store.save_review(kept, email.sha256 if email is not None else analysis.raw_sha256)
    rendered = render(d, rules, ack_at or now, ack_ids() if wants_ack(d) else None)
    d = records.write(store, rendered, now, rules.config.sinks, savepoint)
    if d.action in (Action.TICKET, Action.APPEND) and analysis.email is not None:
        kept = analysis.raw if analysis.raw is not None else raw
        if kept is not None and len(kept) <= messages.KEEP_IN_DB:
            messages.keep_bytes(store, analysis.email.sha256, kept)
    return d, facts.after(Rendered(d, rendered.ack), now)


def _failed(analysis: Analysis, raw: bytes | None, exc: Exception) -> Analysis:
    """The message whose own decision or rows failed, quarantined with its bytes (`raw`)
    when the caller has them: it would otherwise come back at every fetch and stall its
    mailbox."""
    if raw is not None:
        sha = hashlib.sha256(raw).hexdigest()
    else:  # replay: the bytes stay in their file; the key still stops a second row
        sha = analysis.email.sha256 if analysis.email else analysis.raw_sha256
    return Analysis(
        analysis.source,
        None,
        "internal_error",
        f"{type(exc).__name__}: {exc}",
        raw_sha256=sha,
        raw=raw,
    )


_NOBODYS = (
    sqlite3.OperationalError,
    sqlite3.InternalError,
    OSError,
    MemoryError,
    records.StaleFacts,
)


def _systemic(store: Store, exc: Exception) -> bool:
    """An error of the database, the disk, the machine or the batch rather than of one message
    (the store's backend names its own)."""
    return (
        isinstance(exc, (*_NOBODYS, *store.systemic)) or type(exc) is sqlite3.DatabaseError
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
