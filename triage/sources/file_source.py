"""Files, maildirs and mbox files as a `Source`: the protocol's shape over `iter_paths`.

Replay reads files through `triage.sources.files` directly, in its workers (the
bytes never cross to the main process). This adapter gives the same files the
shape every source has, for a caller that drives any source one way: handles
are positions in input order, bytes are read when fetched, and acknowledging
records the outcome without touching the files (a replay never moves its input).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from triage.sources.base import OUTCOMES
from triage.sources.files import Item, iter_paths


@dataclass(frozen=True, slots=True)
class FileMessage:
    """One file or mbox entry of a batch; `raw` is None when unreadable or over the limit."""

    handle: int
    size: int
    raw: bytes | None
    source: str  # the path, or "path#n" for an mbox entry
    error: str | None = None


class FileSource:
    """The messages under `paths` (as `triage replay` lists them), once each."""

    def __init__(
        self, paths: Sequence[Path], on_ack: Callable[[str, list[FileMessage]], None] | None = None
    ) -> None:
        self.paths = list(paths)
        self.on_ack = on_ack
        self.items: list[Item] = []
        self.acknowledged: dict[str, list[int]] = {outcome: [] for outcome in OUTCOMES}
        self._done: set[int] = set()
        self._fetched: dict[int, FileMessage] = {}

    async def open(self) -> int:
        """List the messages (paths only; bytes are read when fetched); returns how many."""
        self.items = list(iter_paths(self.paths))
        return len(self.items)

    async def unprocessed(self) -> list[int]:
        return [n for n in range(len(self.items)) if n not in self._done]

    async def fetch(
        self, handles: Sequence[int], max_bytes: int, budget: int | None = None
    ) -> tuple[list[FileMessage], list[int]]:
        taken: list[FileMessage] = []
        total = 0
        for k, n in enumerate(handles):
            message = self._read(n, max_bytes)
            counted = message.size if message.raw is not None else 0
            if budget is not None and taken and counted and total + counted > budget:
                return taken, list(handles[k:])  # as IMAP: at least one, then within budget
            total += counted
            taken.append(message)
        return taken, []

    def _read(self, n: int, max_bytes: int) -> FileMessage:
        item = self.items[n]
        raw, error = item.load()
        if raw is None:
            message = FileMessage(n, 0, None, item.source, error or "cannot read")
        elif len(raw) > max_bytes:
            message = FileMessage(n, len(raw), None, item.source, "over the size limit")
        else:
            message = FileMessage(n, len(raw), raw, item.source)
        self._fetched[n] = message
        return message

    async def already_filed(self, outcome: str, message_ids: Sequence[str]) -> set[str]:
        return set()  # files are never filed anywhere

    async def ack(self, handles: Sequence[int], outcome: str) -> None:
        assert outcome in OUTCOMES, outcome
        self.acknowledged[outcome].extend(handles)
        self._done.update(handles)
        if self.on_ack is not None and handles:
            self.on_ack(outcome, [self._fetched[n] for n in handles])

    async def wait(self, stop: asyncio.Event) -> bool:
        return False  # every file was listed at open: no more will come

    async def close(self) -> None:
        return None
