"""Replay: the daemon's engine over messages from files.

Stage one (parse, filter, contact, priority) runs in the engine's one worker
pool, under the daemon's time limit per message ([daemon] message_timeout); the
rest (facts, decide, render, write) runs here, in input order, a batch at a
time (`engine.batch.run_batch`). A message is reported (its "acknowledgement"
in replay) only after the commit that holds it, exactly as the IMAP source
acknowledges.

SIGTERM or SIGINT (to the process or its whole group) ends a run early: the
batch in hand is committed and reported, the workers are stopped, and
`Summary.interrupted` names the signal; a second signal ends it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, islice
from pathlib import Path

from triage import log
from triage.core.analysis import Analysis
from triage.core.decision import Decision
from triage.core.rules import Rules
from triage.engine.batch import log_decision, run_batch
from triage.engine.pool import Pool, analyse_item
from triage.sources.files import Item
from triage.store.sqlite import Store

PARALLEL_FROM = 64  # below this, starting workers costs more than it saves
BATCH = 256
AHEAD = 2  # batches with the workers beyond the one being written, so they never wait


@dataclass
class Summary:
    counts: dict[str, int] = field(default_factory=dict)
    interrupted: int | None = None  # the signal that ended the run early

    def add(self, d: Decision) -> None:
        self.counts[str(d.action)] = self.counts.get(str(d.action), 0) + 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


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
    """Run every item through the engine into `store`; `emit` each decision after its commit."""
    logger = log.get(component="replay")
    summary = Summary()

    def write(analyses: list[Analysis]) -> None:
        for d in run_batch(store, rules, analyses, now):
            log_decision(logger, d)
            summary.add(d)
            emit(d)

    with _stop_on_signals() as stop:
        it = iter(items)
        head = list(islice(it, PARALLEL_FROM))
        workers = workers if workers is not None else (os.cpu_count() or 1)
        if len(head) < PARALLEL_FROM or workers <= 1:
            _in_process(chain(head, it), rules, store.files, batch, stop, write)
        else:
            pool = Pool(rules, store.files, workers)
            try:
                asyncio.run(_pooled(chain(head, it), pool, batch, stop, write))
            finally:
                pool.close()  # also when the caller stops early
        summary.interrupted = stop.signal
    if summary.interrupted is not None:
        logger.warning("replay_interrupted", signal=signal.Signals(summary.interrupted).name)
    return summary


def _in_process(
    items: Iterator[Item],
    rules: Rules,
    files: Path | None,
    batch: int,
    stop: _Stop,
    write: Callable[[list[Analysis]], None],
) -> None:
    """A few messages, or one worker asked for: stage one here, one message at a time."""
    pending: list[Analysis] = []
    for item in items:
        pending.append(analyse_item(item, rules, files))
        if len(pending) >= batch or stop.signal is not None:
            write(pending)
            pending = []
        if stop.signal is not None:
            break
    write(pending)


async def _pooled(
    items: Iterator[Item],
    pool: Pool,
    batch: int,
    stop: _Stop,
    write: Callable[[list[Analysis]], None],
) -> None:
    """Batches handed to the pool ahead of the one being written, collected in order."""
    limit = pool.rules.config.daemon.message_timeout
    window: deque = deque()

    def fill() -> None:
        while len(window) <= AHEAD and stop.signal is None:
            part = list(islice(items, batch))
            if not part:
                return
            window.append(pool.submit(part))

    fill()
    try:
        while window:
            analyses = await pool.collect(window.popleft(), limit)
            fill()  # the workers parse the next batches while this one is written
            write(analyses)
            if stop.signal is not None:
                break
    finally:
        for tasks in window:  # submitted, never written: their answers are dropped
            for future, _part in tasks:
                future.cancel()
