"""Replay: the daemon's pipeline over messages from files, on every core.

Stage one (parse, filter, contact, priority) runs in worker processes; stage
two (threading, SLA, store) runs here, in input order, committing in small
groups. A message is reported (its "acknowledgement" in replay) only after
the commit that holds it, exactly as the IMAP source acknowledges.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import chain, islice
from pathlib import Path

from triage import attachments, log
from triage.message import Email
from triage.pipeline import Action, Analysis, Decision, Rules, analyse, decide, duplicate
from triage.replies import Ack, render_ack
from triage.sources.files import Item
from triage.store import Store

PARALLEL_FROM = 64  # below this, starting workers costs more than it saves
BATCH = 256

_worker: tuple[Rules, Path | None] | None = None


def _init_worker(rules: Rules, files: Path | None) -> None:
    global _worker
    _worker = (rules, files)


def _analyse_item(item: Item) -> Analysis:
    assert _worker is not None
    return analyse_item(item, *_worker)


def analyse_item(item: Item, rules: Rules, files: Path | None) -> Analysis:
    """Stage one plus the attachment store: bytes leave the worker only when kept for quarantine."""
    raw, error = item.load()
    if raw is None:
        return Analysis(item.source, None, "unreadable", error or "cannot read")
    result = analyse(raw, item.source, rules)
    if result.error is not None:
        # Keep the bytes of what we could not read: nothing is lost on bad input.
        return replace(result, raw_sha256=hashlib.sha256(raw).hexdigest(), raw=raw)
    if result.email is not None and result.email.attachments:
        keep = files if result.filter_id is None else None
        result = replace(result, email=attachments.store_all(keep, result.email))
    return result


@dataclass
class Summary:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, d: Decision) -> None:
        self.counts[str(d.action)] = self.counts.get(str(d.action), 0) + 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def analyses(
    items: Iterable[Item], rules: Rules, workers: int | None, files: Path | None = None
) -> Iterator[Analysis]:
    """Stage one over `items`, in input order, in parallel when it pays."""
    it = iter(items)
    head = list(islice(it, PARALLEL_FROM))
    workers = workers if workers is not None else (os.cpu_count() or 1)
    if len(head) < PARALLEL_FROM or workers <= 1:
        for item in chain(head, it):
            yield analyse_item(item, rules, files)
        return
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(rules, files)) as pool:
        yield from pool.imap(_analyse_item, chain(head, it), chunksize=64)


def replay(
    items: Iterable[Item],
    rules: Rules,
    store: Store,
    now: datetime,
    emit: Callable[[Decision], None],
    workers: int | None = None,
    batch: int = BATCH,
) -> Summary:
    """Run every item through the pipeline into `store`; `emit` each decision after its commit."""
    logger = log.get(component="replay")
    summary = Summary()
    pending: list[Decision] = []
    seen: dict[str, str] = {}  # keys written in the open batch -> fingerprint

    def flush() -> None:
        store.commit()
        for d in pending:
            logger.info(
                "message_triaged",
                source=d.source,
                message_id=d.message_id,
                action=str(d.action),
                reason=d.reason,
                ticket=d.ticket,
                priority=d.priority,
                match=d.match,
            )
            summary.add(d)
            emit(d)
        pending.clear()
        seen.clear()

    for analysis in analyses(items, rules, workers, store.files):
        store.begin()
        d = _one(analysis, rules, store, now, seen)
        pending.append(d)
        if len(pending) >= batch:
            flush()
    flush()
    return summary


def resolve_key(email: Email, store: Store, seen: dict[str, str]) -> tuple[str, bool, str | None]:
    """(key, is_duplicate, note): a stored Message-ID is a duplicate only if the content agrees.

    A re-fetch or second delivery of one message is a no-op; a different message
    that reuses a Message-ID is kept under the ID plus its fingerprint.
    """
    key = email.key
    for candidate in (key, f"{key}#{email.fingerprint}"):
        stored = seen.get(candidate)
        if stored is None:
            stored = store.fingerprint_of(candidate)
        if stored is None:
            note = None if candidate == key else f"Message-ID {key} reused by a different message"
            return candidate, False, note
        if stored in ("", email.fingerprint) or not email.message_id:
            return candidate, True, None
    return key, True, None


def _one(
    analysis: Analysis, rules: Rules, store: Store, now: datetime, seen: dict[str, str]
) -> Decision:
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
    config = rules.config

    def ack(t: Decision) -> Ack:
        assert t.email is not None and t.ticket is not None
        return render_ack(t.email, t.ticket, t.priority, t.due, config, now)

    d = store.record(d, now, ack)
    if email is not None and note:
        d = replace(d, reasons=(*d.reasons, f"key: {note}; kept as {key}"))
    if key:
        seen[key] = email.fingerprint if email is not None else ""
    return d
