"""Holding a lease while a daemon works on what it guards (a mailbox, a timer).

`Holding.acquire` waits until the lease is this daemon's; `keep` renews it every third of
its term and sets `lost` when a renewal is refused (another daemon took it after it ran out)
or when the term ends with no renewal getting through (the database unreachable): from
then on, what the lease guards must not be touched. Rules: triage/core/leases.py; rows:
triage/store/leases.py.

The lease rows go through a connection of their own: the store's connection may be inside
a batch's transaction across an await, and a renewal sent inside it would be committed, or
rolled back, with that batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from triage import log
from triage.core.leases import Term
from triage.store import leases

if TYPE_CHECKING:
    from triage.store.sqlite import Store


def _now() -> datetime:
    return datetime.now(UTC)


class Holding:
    """Lease `name` held for `owner` on `store` (a connection used for leases only)."""

    def __init__(
        self,
        store: Store,
        name: str,
        owner: str,
        term: Term,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.store = store
        self.name = name
        self.owner = owner
        self.term = term
        self.clock = clock
        self.lost = asyncio.Event()
        self.log = log.get(component="lease").bind(lease=name, owner=owner)
        self._held_until: float | None = None  # the event loop's clock: no wall-clock jumps

    def _renew(self) -> bool | None:
        """Take or renew the lease: True when ours now, False when another holds it, None
        when the database could not be reached."""
        started = asyncio.get_running_loop().time()
        try:
            got = leases.take(self.store, self.name, self.owner, self.clock(), self.term)
        except self.store.systemic as exc:  # the database: tried again next time
            self.log.warning("lease_unreachable", error=str(exc).strip()[:200])
            return None
        if got is None:
            return False
        # counted from before the statement was sent: never later than the row's expiry
        self._held_until = started + self.term.seconds
        return True

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until the lease is ours (True), or `stop` is set first (False)."""
        while not stop.is_set():
            if self._renew():
                self.lost.clear()
                self.log.info("lease_taken")
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.term.renew_every)
        return False

    async def keep(self, stop: asyncio.Event) -> None:
        """Renew every third of the term until `stop`; when a renewal is refused (another
        daemon took the lease), or the database stays unreachable until the next try would
        come after the lease ends, set `lost` and return: before the lease has run out, so
        nothing is touched while another daemon may hold it."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.term.renew_every)
            if stop.is_set():
                return
            renewed = self._renew()
            if renewed:
                continue
            if renewed is None and loop.time() + self.term.renew_every < (self._held_until or 0):
                continue  # unreachable, and ours past the next try: try again then
            self.lost.set()
            self.log.warning("lease_lost", refused=renewed is False)
            return

    def release(self) -> None:
        """Give the lease up (stopping), so another daemon need not wait out its term."""
        with contextlib.suppress(Exception):
            leases.release(self.store, self.name, self.owner)


async def under_lease(
    holding: Holding,
    stop: asyncio.Event,
    work: Callable[[], Awaitable[None]],
    on_hold: Callable[[bool], None] = lambda held: None,
) -> None:
    """Run `work` only while `holding` is ours, until `stop`: wait for the lease, run `work`
    and renew beside it; when the lease is lost, cancel `work` (it touches nothing more once
    it has ended) and wait for the lease again. `on_hold(True)` is called once the lease is
    ours, `on_hold(False)` once `work` has ended and before the lease is given up.

    `work` ends by itself after `stop` (the batch in hand finished): renewals go on until it
    has, so a slow last batch never outlives the lease. Cancelled (the daemon's stop cut
    short), `work` is cancelled with it and the lease given up.
    """
    while not stop.is_set():
        if not await holding.acquire(stop):
            return
        on_hold(True)
        done = asyncio.Event()
        task = asyncio.create_task(work(), name=f"{holding.name}:work")
        keeper = asyncio.create_task(holding.keep(done), name=f"{holding.name}:renew")
        lost = asyncio.ensure_future(holding.lost.wait())
        try:
            await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
            await asyncio.wait({task})
            done.set()
            lost.cancel()
            await asyncio.wait({keeper})
            on_hold(False)
            if not holding.lost.is_set():
                holding.release()
        if stop.is_set():
            return
        if not holding.lost.is_set():  # `work` ended, or failed, while the daemon runs on
            failed = None if task.cancelled() else task.exception()
            holding.log.error("leased_work_ended", error=repr(failed) if failed else None)
            with contextlib.suppress(TimeoutError):  # never a busy loop of take and fail
                await asyncio.wait_for(stop.wait(), holding.term.renew_every)
