"""Replay: the daemon's pipeline over messages from files, on every core.

Stage one (parse, filter, contact, priority) runs in worker processes; stage
two (threading, SLA, store) runs here, in input order, committing in small
groups. A message is reported (its "acknowledgement" in replay) only after
the commit that holds it, exactly as the IMAP source acknowledges.

SIGTERM or SIGINT (to the process or its whole group) ends a run early: what was
read is committed and reported, the workers are stopped, and `Summary.interrupted`
names the signal; a second signal ends it at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import chain, islice
from pathlib import Path

from triage import log
from triage.core.pipeline import Analysis, Decision, Rules, analyse
from triage.engine.record import Recorder, log_decision
from triage.engine.workers import init_worker, stop_pool
from triage.sources.files import Item
from triage.store import files as attachments
from triage.store.sqlite import Store

PARALLEL_FROM = 64  # below this, starting workers costs more than it saves
BATCH = 256

_worker: tuple[Rules, Path | None] | None = None


def _init_worker(rules: Rules, files: Path | None, parent: int) -> None:
    global _worker
    _worker = (rules, files)
    init_worker(parent)  # a signal to the group stops the run here, in order


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
    interrupted: int | None = None  # the signal that ended the run early

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
    pool = ctx.Pool(workers, initializer=_init_worker, initargs=(rules, files, os.getpid()))
    try:
        yield from pool.imap(_analyse_item, chain(head, it), chunksize=64)
    finally:
        stop_pool(pool)  # also when the caller stops early


class _Stop:
    """The first SIGTERM or SIGINT asks the run to end after the message in hand.

    The handler only notes the signal: it runs between two bytecodes of whatever the main
    thread was doing, and logging from it deadlocked on the log's lock when that was a
    log line (stage two logs one per message).
    """

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, sig: int, _frame) -> None:
        if self.signal is not None:  # a second signal: end now, as if none were handled
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
            return
        self.signal = sig


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[_Stop]:
    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # only the main thread may handle signals; a caller elsewhere keeps its own
        return
    signals = (signal.SIGTERM, signal.SIGINT)
    before = {sig: signal.signal(sig, stop) for sig in signals}
    try:
        yield stop
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


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

    with _stop_on_signals() as stop:
        stream = analyses(items, rules, workers, store.files)
        try:
            for analysis in stream:
                d = recorder.record(analysis, now)
                pending.append(d)
                if len(pending) >= batch or stop.signal is not None:
                    flush()
                if stop.signal is not None:
                    break
        finally:
            stream.close()  # stops the workers now, not when the generator is collected
        flush()
        summary.interrupted = stop.signal
    if summary.interrupted is not None:
        logger.warning("replay_interrupted", signal=signal.Signals(summary.interrupted).name)
    return summary
