"""The daemon's periodic tasks: SLA checks (and the review digest), the outbox, the watchdog.

Each runs until the daemon's `stop` event and sleeps in a way that `stop` cuts short. The
SLA check and the outbox take the daemon's store lock, so they never interleave with a
batch. A mixin of `Daemon` (triage/service/daemon.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from structlog.typing import FilteringBoundLogger

from triage.config import Config
from triage.core import sla as sla_mod
from triage.core.rules import Rules
from triage.engine import review
from triage.service import tracking
from triage.service.notify import Notifier
from triage.sinks import outbox
from triage.store.sqlite import Store

ROUND = 100  # outbox rows per drain round; a full round is followed by another at once


class Timers:
    """`Daemon`'s periodic tasks; `_outbox` updates the relay's state through `_status`."""

    config: Config
    rules: Rules
    store: Store
    notifier: Notifier
    log: FilteringBoundLogger
    lock: asyncio.Lock
    stop: asyncio.Event
    outbox_wake: asyncio.Event
    relay_error: str | None

    async def _sla_checks(self) -> None:
        policies = sla_mod.load_policies(self.config.sla_dir)
        while not self.stop.is_set():
            async with self.lock:
                try:
                    result = tracking.check(
                        self.store, policies, datetime.now(UTC), sinks=self.rules.config.sinks
                    )
                    if result.warned or result.breached:
                        self.log.info(
                            "sla_checked", warned=len(result.warned), breached=len(result.breached)
                        )
                except Exception:  # noqa: BLE001 - a failed check is retried next time
                    self.log.exception("sla_check_failed")
                try:  # the same timer: the operator's daily digest of mail held for review
                    sent = review.queue_digest(self.store, self.config, datetime.now(UTC))
                    if sent is not None:
                        self.log.info("review_digest_queued", to=sent.to, subject=sent.subject)
                        self.outbox_wake.set()
                except Exception:  # noqa: BLE001 - tried again at the next check
                    self.log.exception("review_digest_failed")
            await self._sleep(self.config.daemon.sla_check_seconds)

    async def _outbox(self) -> None:
        """Send what the outbox holds; woken by new rows, else every `outbox_seconds`.

        While the relay fails, rounds back off (doubling up to `backoff_max_seconds`) and new
        rows do not wake it: each round is a login attempt, and a relay that sees failed
        logins in a burst may lock the account.
        """
        sender = outbox.sender_for(self.config)
        every = self.config.daemon.outbox_seconds
        failed_rounds = 0
        while not self.stop.is_set():
            self.outbox_wake.clear()
            full = False
            try:
                result = await outbox.drain(
                    self.store, sender, lock=self.lock, limit=ROUND, stop=self.stop
                )
                full = result.sent + result.deferred + result.failed >= ROUND
                if result.deferred:
                    self.log.info("outbox_waiting", deferred=result.deferred)
                if result.relay_error or result.reached:
                    failed_rounds = failed_rounds + 1 if result.relay_error else 0
                    if result.relay_error != self.relay_error:
                        self.relay_error = result.relay_error
                        self._status()
            except Exception:  # noqa: BLE001 - the next round tries again
                self.log.exception("outbox_error")
            if failed_rounds:
                await self._sleep(
                    min(self.config.daemon.backoff_max_seconds, every * 2 ** (failed_rounds - 1))
                )
                continue
            if full:  # more may be due: the next round at once, not after `outbox_seconds`
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(_either(self.stop, self.outbox_wake)), every)

    async def _sleep(self, seconds: float) -> None:
        """Wait `seconds`, or less when told to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval()
        if interval is None:
            return
        while not self.stop.is_set():
            self.notifier.watchdog()
            await self._sleep(interval)


async def _either(a: asyncio.Event, b: asyncio.Event) -> None:
    """Until either event is set."""
    waits = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
