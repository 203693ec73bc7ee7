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
from triage.ingest import Recorder, log_decision
from triage.pipeline import Analysis, Decision, Rules, analyse
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
    """Stage one of a file or mbox entry, read here, in the worker."""
    raw, error = item.load()
    if raw is None:
        return Analysis(item.source, None, "unreadable", error or "cannot read")
    return stage_one(raw, item.source, rules, files)


def stage_one(raw: bytes, source: str, rules: Rules, files: Path | None) -> Analysis:
    """Stage one plus the attachment store: bytes leave the worker only for quarantine or review.

    Shared by replay's workers and the daemon's.
    """
    result = analyse(raw, source, rules)
    if result.error is not None:
        # Keep the bytes of what we could not read: nothing is lost on bad input.
        return replace(result, raw_sha256=hashlib.sha256(raw).hexdigest(), raw=raw)
    weighed = bool(result.evidence)  # only weak rules fired: may become a ticket or review
    if result.email is not None and result.email.attachments:
        keep = files if result.filter_id is None or weighed else None
        result = replace(result, email=attachments.store_all(keep, result.email))
    if weighed:
        # Review keeps the bytes beside the database, so a release works without the mailbox.
        result = replace(result, raw_sha256=hashlib.sha256(raw).hexdigest(), raw=raw)
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
    recorder = Recorder(rules, store)

    def flush() -> None:
        recorder.commit()
        for d in pending:
            log_decision(logger, d)
            summary.add(d)
            emit(d)
        pending.clear()

    for analysis in analyses(items, rules, workers, store.files):
        d = recorder.record(analysis, now)
        pending.append(d)
        if len(pending) >= batch:
            flush()
    flush()
    return summary
