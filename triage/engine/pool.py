"""Step 1: the one parsing pool, with a time limit per message, for replay and the daemon.

Work is submitted as soon as it is known and collected later, in order, so the
workers parse one batch while this process fetches or reads the next and
writes the last. It travels in chunks; a chunk that overruns the limit is stuck
on one of its messages, which cannot be interrupted inside a worker: the pool
is replaced, whatever else waited is sent to the new one, and the chunk's
messages run again one by one, so the stuck one is quarantined with reason
`timeout` (after at most twice the limit) and the others are not.

The workers are the orphan-proof kind of `triage.engine.workers`: their own
process group, dead with their parent, stopped within a bound.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import multiprocessing.pool
import os
from pathlib import Path

from triage.core.analysis import Analysis, analyse
from triage.core.rules import Rules
from triage.core.values import replaced
from triage.engine.workers import finished, init_worker, stop_pool
from triage.sources.files import Item
from triage.store import files as attachments
from triage.store import messages

# Messages per task. Each task costs this process one pickle each way, a result taken in by
# the pool's thread and a wake-up of its loop, so tasks are as large as keeps every worker
# busy: a batch is cut into about two tasks per worker, of 1 to CHUNK messages (with 16 per
# task a replay spent a fifth more of its writer's CPU than with 64).
CHUNK = 64

Task = tuple[asyncio.Future, list[Item]]

_worker: tuple[Rules, Path | None] | None = None


def _init_worker(rules: Rules, files: Path | None, parent: int) -> None:
    global _worker
    _worker = (rules, files)
    init_worker(parent)  # the parent decides when workers stop


def _analyse_chunk(items: list[Item]) -> list[Analysis]:
    assert _worker is not None
    rules, files = _worker
    return [analyse_item(item, rules, files) for item in items]


def analyse_item(item: Item, rules: Rules, files: Path | None) -> Analysis:
    """Stage one of one item, its bytes read here (in the worker) when it names a file."""
    raw, error = item.load()
    if raw is None:
        return Analysis(item.source, None, "unreadable", error or "cannot read")
    # An item that came with its bytes (the daemon's) has them in the writing process too:
    # they need not travel back to be kept with a ticket's rows.
    return stage_one(raw, item.source, rules, files, send_back=item.raw is None)


def stage_one(
    raw: bytes, source: str, rules: Rules, files: Path | None, send_back: bool = True
) -> Analysis:
    """Stage one plus the attachment store; bytes leave the worker for quarantine, review,
    and to be kept with a ticket's rows (up to `messages.KEEP_IN_DB`) unless the caller holds
    them already (`send_back` False)."""
    result = analyse(raw, source, rules)
    if result.error is not None:
        # Keep the bytes of what we could not read: nothing is lost on bad input.
        return replaced(result, raw_sha256=hashlib.sha256(raw).hexdigest(), raw=raw)
    weighed = bool(result.evidence)  # only weak rules fired: may become a ticket or review
    if files is not None and result.email is not None and (result.filter_id is None or weighed):
        # What may become a ticket or an append keeps its bytes, for `triage explain
        # T-000123` and `--message KEY`: a small message in the database, with its rows
        # (a row costs far less than a file); a large one in the file store, from here.
        if len(raw) <= messages.KEEP_IN_DB:
            if send_back:
                result = replaced(result, raw=raw)
        else:
            attachments.save(files, result.email.sha256, raw)
    if result.email is not None and result.email.attachments:
        keep = files if result.filter_id is None or weighed else None
        result = replaced(result, email=attachments.store_all(keep, result.email))
    if weighed:
        # Review keeps the bytes beside the database, so a release works without the mailbox.
        result = replaced(result, raw_sha256=hashlib.sha256(raw).hexdigest(), raw=raw)
    return result


def unreadable(source: str, raw: bytes | None, reason: str, detail: str) -> Analysis:
    """A message stage one could not finish (`timeout`, `too_large` ...), bytes kept if any."""
    sha = hashlib.sha256(raw).hexdigest() if raw is not None else ""
    return Analysis(source, None, reason, detail, raw_sha256=sha, raw=raw)


class _Workers(multiprocessing.pool.Pool):
    """The stdlib's process pool, whose worker-keeping thread sleeps until something changes.

    The stdlib's thread also wakes whenever a result is waiting in the pipe, and loops
    (checking every worker, a `poll` of every pipe) until the results thread has read it
    all: with results of 64 messages it spent about 45 µs of this process's CPU a message.
    It is woken anyway when a worker exits (each worker's sentinel), when the pool is
    closed or terminated, and when its last task is done (the change notifier), which is
    all it acts on: the stdlib's ThreadPool waits on the notifier alone in the same way.
    """

    def _get_sentinels(self) -> list:
        return [self._change_notifier._reader]  # type: ignore[attr-defined]


class Pool:
    """Parsing processes for stage one, with a time limit per message (see the module)."""

    def __init__(self, rules: Rules, files: Path | None, workers: int | None = None) -> None:
        self.rules = rules
        self.files = files
        self.workers = workers or os.cpu_count() or 1
        self.pool = self._start()
        self.retired: list = []  # pools replaced by a reload, finishing what they were given
        self.waiting: dict[asyncio.Future, list[Item]] = {}

    def _start(self):
        return _Workers(
            self.workers,
            initializer=_init_worker,
            initargs=(self.rules, self.files, os.getpid()),
            context=multiprocessing.get_context("fork"),
        )

    def reload(self, rules: Rules) -> None:
        """New rules for what is submitted from now on; the old pool finishes what it has."""
        self.rules = rules
        old, self.pool = self.pool, self._start()
        old.close()  # it finishes what it was given
        self.retired = [p for p in self.retired if not finished(p)] + [old]

    def submit(self, items: list[Item], chunk: int | None = None) -> list[Task]:
        """Start stage one on every item now; `collect` the results later."""
        loop = asyncio.get_running_loop()
        if chunk is None:
            chunk = max(1, min(CHUNK, -(-len(items) // (2 * self.workers))))
        tasks = []
        for start in range(0, len(items), chunk):
            part = items[start : start + chunk]
            future = loop.create_future()
            self.waiting[future] = part
            future.add_done_callback(self._forget)
            self._send(future, part)
            tasks.append((future, part))
        return tasks

    def _forget(self, future: asyncio.Future) -> None:
        self.waiting.pop(future, None)

    def _send(self, future: asyncio.Future, part: list[Item]) -> None:
        loop = future.get_loop()

        def done(result) -> None:
            loop.call_soon_threadsafe(_settle, future, result, None)

        def failed(exc) -> None:
            loop.call_soon_threadsafe(_settle, future, None, exc)

        self.pool.apply_async(_analyse_chunk, (part,), callback=done, error_callback=failed)

    async def collect(self, tasks: list[Task], limit: float) -> list[Analysis]:
        """The analyses, in order; a chunk's limit runs from when it is awaited.

        Work is handed out in order, so when every earlier chunk is done the one
        awaited is running: if it is not done within `limit`, it is stuck.
        """
        results: list[Analysis] = []
        for future, part in tasks:
            try:
                results.extend(await asyncio.wait_for(asyncio.shield(future), limit))
                continue
            except TimeoutError:
                future.cancel()  # a late answer from the old pool is ignored
                problem = ("timeout", f"took longer than {limit:g} s")
                # the chunk's messages one by one, ahead of everything else that waited
                alone = self._replace_pool(part if len(part) > 1 else [])
            except Exception as exc:  # noqa: BLE001 - a worker crash is that message's problem
                problem = ("pipeline_error", f"{type(exc).__name__}: {exc}")
                alone = self.submit(part, chunk=1) if len(part) > 1 else []
            if alone:  # find the one to blame
                results.extend(await self.collect(alone, limit))
            else:
                item = part[0]
                raw = item.raw if item.raw is not None else item.load()[0]
                results.append(unreadable(item.source, raw, *problem))
        return results

    def _replace_pool(self, first: list[Item]) -> list[Task]:
        """A worker is stuck: a new pool that runs `first` one by one, then what else waited."""
        stop_pool(self.pool)
        self.pool = self._start()
        others = [(f, part) for f, part in self.waiting.items() if not f.done()]
        alone = self.submit(first, chunk=1)
        for future, part in others:
            self._send(future, part)
        return alone

    def close(self) -> None:
        """Stop every worker, waiting a bounded time (see workers.stop_pool)."""
        for pool in (*self.retired, self.pool):
            stop_pool(pool)
        self.retired.clear()


def _settle(future: asyncio.Future, result, exc) -> None:
    if not future.done():
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
