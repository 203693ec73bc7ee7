"""Parsing worker processes that only their parent stops.

The daemon and replay parse in a multiprocessing pool. A signal meant for the program as a
whole (Ctrl-C at a terminal, `kill -TERM -PGID`, a supervisor that signals the process group)
reaches every process of its group at once. A worker killed that way while it waits for work
dies holding the pool's task-queue lock: no worker gets a task again, and the pool's
terminate() waits for that lock for ever. So a worker leaves its parent's process group,
ignores the signals that ask the program to stop (the parent decides, finishes the message
in hand, then stops its workers), dies with its parent, and the parent's wait for it is
bounded.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_SECONDS = 2.0  # a pool's own shutdown takes ~0.1 s; past this it is stuck: SIGKILL
# Workers run this much nicer than their parent. The parent writes (and in the daemon
# holds the mailbox connections and renews leases): what it does is what every message
# waits for, and it gets a core whenever it has work, the workers parse with the rest.
# As equals the parent lost a share to them, fell behind by the batches they had
# parsed, and wrote those last on one core: replay was ~5-10 % slower (bench/README.md).
NICER = 5


def init_worker(parent: int) -> None:
    """In a new worker: its own process group, no SIGINT or SIGHUP, death with `parent`, and
    a lower priority than the parent's (`NICER`).

    SIGTERM keeps its default action: Pool.terminate() sends it, and it must end a worker
    stuck in C code (a regular expression that backtracks) at once.
    """
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    die_with(parent)
    with contextlib.suppress(OSError):
        os.nice(NICER)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def die_with(parent: int) -> None:
    """SIGKILL this worker when its parent dies, however it dies (Linux; elsewhere nothing).

    An idle worker notices its parent is gone; one busy with a poison message does not, and
    after a `kill -9` of the daemon (the OOM killer, a supervisor that signals only the main
    pid) it went on spinning, alone, for ever. Out of the parent's process group, it would
    not even get a group's signal.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return
    if os.getppid() != parent:  # it died before the line above: no signal will come
        os._exit(1)


def stop_pool(pool, timeout: float = STOP_SECONDS) -> bool:
    """Terminate `pool`; SIGKILL its workers if that has not finished within `timeout` s.

    terminate() waits for the task-queue lock, which a worker killed from outside (the OOM
    killer, `systemctl kill`) may hold for ever; it then runs on, harmless, in a daemon
    thread. True when the pool ended by itself.
    """
    done = threading.Event()

    def terminate() -> None:
        pool.terminate()
        done.set()

    threading.Thread(target=terminate, name="pool-stop", daemon=True).start()
    if done.wait(timeout):
        return True
    # The pool's own list of its worker processes (private, and stable since Python 2.6).
    for process in list(getattr(pool, "_pool", ())):
        if process.exitcode is None:
            with contextlib.suppress(OSError, ValueError):
                process.kill()
    for process in list(getattr(pool, "_pool", ())):
        with contextlib.suppress(OSError, ValueError, AssertionError):
            process.join(1)
    return False


def finished(pool) -> bool:
    """Every worker of a closed `pool` has exited (it needs no stop_pool any more)."""
    return all(process.exitcode is not None for process in getattr(pool, "_pool", ()))
