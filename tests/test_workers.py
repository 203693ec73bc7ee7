"""Parsing workers leave the parent's process group, ignore the stop signals, and a pool whose
task-queue lock died with a worker is still stopped within a bound."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

from tests.support import procs
from triage.engine.workers import NICER, finished, init_worker, stop_pool


def _where(_n: int) -> tuple[int, int, object, object, int]:
    return (
        os.getpid(),
        os.getpgid(0),
        signal.getsignal(signal.SIGINT),
        signal.getsignal(signal.SIGTERM),
        os.nice(0),
    )


def _pool(size: int = 2):
    ctx = multiprocessing.get_context("fork")
    return ctx.Pool(size, initializer=init_worker, initargs=(os.getpid(),))


def _children() -> set[int]:
    """This process's multiprocessing children (servers started by other tests are not)."""
    return {p.pid for p in multiprocessing.active_children()}


def test_a_worker_has_its_own_process_group_ignores_sigint_and_yields_to_its_parent():
    pool = _pool()
    try:
        pid, group, on_int, on_term, nice = pool.apply(_where, (0,))
    finally:
        assert stop_pool(pool)
    assert group == pid != os.getpgid(0)  # a signal to our group does not reach it
    assert on_int == signal.SIG_IGN
    assert on_term == signal.SIG_DFL  # so that terminate() ends even a worker stuck in C
    # the parent (writer, mailbox connections, leases) comes first when cores are short
    assert nice == min(19, os.nice(0) + NICER) > os.nice(0)


def test_a_pool_whose_queue_lock_died_with_a_worker_is_still_stopped_in_time():
    """Idle workers wait for work holding the task queue's lock in turn; one killed there
    keeps it for ever. Pool.terminate() then waited for ever (what a SIGTERM to the whole
    process group did to the daemon); stop_pool gives up on it after its bound."""
    before = _children()
    pool = _pool()
    time.sleep(0.3)  # both idle: one of them holds the lock while it waits
    for pid in _children() - before:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)  # the pool starts replacements, which wait for the dead lock for ever
    replacements = _children() - before
    assert replacements
    started = time.monotonic()
    assert stop_pool(pool, timeout=1.0) is False
    assert time.monotonic() - started < 3
    assert [pid for pid in replacements if procs.starttime(pid) is not None] == []
    assert finished(pool)


def test_a_healthy_pool_stops_by_itself():
    pool = _pool()
    assert pool.apply(_where, (0,))[0] != os.getpid()
    started = time.monotonic()
    assert stop_pool(pool) is True
    assert time.monotonic() - started < 2
    assert finished(pool)
