"""Processes seen through /proc, for servers and harnesses that must leave none behind.

A process is named by (pid, start time): a pid alone may be reused by the time it is
signalled. Nothing here signals by name; `signal_matching` also checks the command line.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path


def stopped_at_exit(method: str) -> list:
    """A list for the servers a module starts: each still in it when the test process
    exits is stopped by calling its `method` (errors ignored: the exit goes on)."""
    started: list = []

    def stop_all() -> None:
        for server in list(started):
            with contextlib.suppress(Exception):
                getattr(server, method)()

    atexit.register(stop_all)
    return started


_SBIN = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")


def find_tool(tool: str) -> str | None:
    """The path of an executable: $PATH first, then the sbin folders a test user may lack."""
    found = shutil.which(tool)
    if found:
        return found
    for d in _SBIN:
        p = Path(d, tool)
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def proc_fields(pid: int | str) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (state first: see proc(5), less
    two), or None when the process is gone. The name may hold spaces and ')': it is cut at
    the last ')'."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return raw[raw.rindex(b")") + 2 :].split()


def starttime(pid: int) -> int | None:
    """When pid started (clock ticks after boot), or None when it is gone."""
    fields = proc_fields(pid)
    return int(fields[19]) if fields else None


def alive(pid: int, start: int) -> bool:
    """The process that started at `start` still runs as pid (not a zombie, not a reused pid)."""
    fields = proc_fields(pid)
    return fields is not None and int(fields[19]) == start and fields[0] not in (b"Z", b"X")


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 when it is gone)."""
    fields = proc_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[tuple[int, int]]:
    """(pid, starttime) of every descendant of pid, from one look at /proc."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        fields = proc_fields(entry) if entry.isdigit() else None
        if fields is not None:
            children.setdefault(int(fields[1]), []).append((int(entry), int(fields[19])))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child[0])
    return out


def session_members(sid: int, mark: str = "") -> list[int]:
    """Live pids of the session `sid` whose command line holds `mark`: a process started in
    its own session and everything it started, orphans and workers in process groups of their
    own included (what systemd's cgroup is to a service)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = proc_fields(entry)
        if fields is None:
            continue
        try:
            line = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] not in (b"Z", b"X") and mark.encode() in line:
            out.append(int(entry))
    return out


def signal_matching(procs: list[tuple[int, int]], sig: int, marks: tuple[str, ...]) -> None:
    """Signal each (pid, starttime) that is still the same process and whose command line
    (process title) contains one of `marks`."""
    for pid, start in procs:
        if not alive(pid, start):
            continue
        line = " ".join(cmdline(pid))
        if any(m in line for m in marks):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def wait_gone(procs: list[tuple[int, int]], timeout: float) -> bool:
    """Until none of `procs` runs; False when some still do after `timeout`."""
    deadline = time.monotonic() + timeout
    while any(alive(p, s) for p, s in procs):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def stop_child(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Send `sig` to our child, wait up to `timeout`, then SIGKILL and wait again."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)
