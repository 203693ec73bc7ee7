"""Processes seen through /proc, for servers and tests that must leave none behind."""

from __future__ import annotations

import os
from pathlib import Path

from tests.servers import proc_fields


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
