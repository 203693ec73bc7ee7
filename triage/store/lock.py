"""One `triage run` per database: an exclusive lock on a file beside it, held while the daemon lives.

flock(2), not a pid file: the kernel drops the lock when the process ends, however it ends
(kill -9, the OOM killer, a power cut), so a crash never leaves a stale lock that an operator
must delete. The file also says who holds it (pid, host, since when), for the refusal message.
A forked child (a parse worker) closes its copy of the descriptor at fork, so a child that
outlives the daemon for a moment does not keep the lock.

Only the daemon takes it. Commands that read, `triage replay` into another database and
`triage outbox send --once` do not: the outbox's row claims keep concurrent drainers apart.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from triage import instants
from triage.errors import TriageError

_HELD: set[int] = set()  # descriptors of locks this process holds


def _close_in_child() -> None:
    """After fork, in the child: drop the copies (the parent keeps the lock)."""
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


class LockError(TriageError, RuntimeError):
    """The daemon's lock cannot be taken; the message names the file and the fix."""


class AlreadyRunning(LockError):
    pass


def lock_path(db: Path) -> Path:
    """The lock file beside `db`: triage.db -> triage.db.lock."""
    return db.with_name(db.name + ".lock")


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds the lock, as written in the lock file."""

    pid: int | None
    host: str
    since: str

    @classmethod
    def from_text(cls, text: str) -> Holder:
        try:
            data = json.loads(text)
            return cls(int(data["pid"]), str(data["host"]), str(data["since"]))
        except (ValueError, KeyError, TypeError):  # written a moment ago, or by hand
            return cls(None, "unknown host", "an unknown time")

    @classmethod
    def this_process(cls, now: datetime) -> Holder:
        since = instants.iso_seconds(now)
        return cls(os.getpid(), socket.gethostname(), since)

    def text(self) -> str:
        return json.dumps({"pid": self.pid, "host": self.host, "since": self.since}) + "\n"

    def describe(self) -> str:
        pid = f"pid {self.pid}" if self.pid is not None else "a process that is still starting"
        return f"{pid} on {self.host}, since {self.since}"


class DaemonLock:
    """The held lock; `release()` (or the end of the process) frees it."""

    def __init__(self, path: Path, fd: int, holder: Holder) -> None:
        self.path = path
        self.holder = holder
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is None:
            return
        _HELD.discard(self._fd)
        with contextlib.suppress(OSError):  # leave the file: removing it would race a newcomer
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the last descriptor releases the flock
        self._fd = None


def acquire(db: Path, now: datetime | None = None) -> DaemonLock:
    """Take the lock beside `db`, or raise AlreadyRunning naming the process that has it.

    Beside the file itself: a database reached through a symlink has one lock, not two.
    """
    path = lock_path(Path(db).resolve())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise LockError(
            f"{path}: cannot open the daemon's lock file ({exc.strerror}); fix: run as the user"
            " that owns the database, or point [store] db at a folder that user can write"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = Holder.from_text(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        os.close(fd)
        raise AlreadyRunning(
            f"{db} is in use by another `triage run` ({holder.describe()}; lock file {path});"
            " fix: stop that one first (systemctl stop triage), or give this one its own"
            " [store] db"
        ) from None
    holder = Holder.this_process(now or datetime.now(UTC))
    data = holder.text().encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    _HELD.add(fd)
    return DaemonLock(path, fd, holder)
