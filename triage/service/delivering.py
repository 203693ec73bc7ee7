"""The daemon's delivery loop, and the mailbox events it records for the sinks.

The loop asks the database, every POLL seconds, when the next delivery is due (a read of
one index), and runs a drainer round when something is; so an event reaches its receiver
within about POLL of the commit that wrote it, without the ingest path waking anyone.
After SIGHUP the sinks of the reloaded configuration are used from the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

from triage import log
from triage.config import Config
from triage.config.endpoints import Mailbox
from triage.sinks.drainer import Drainer
from triage.sinks.events import Event
from triage.store import deliveries
from triage.store.sqlite import Store

POLL = 0.2  # seconds between two looks for due rows


async def run(
    store: Store, current: Callable[[], Config], lock: asyncio.Lock, stop: asyncio.Event
) -> None:
    """Deliver what is due until `stop` is set; `current()` is the configuration in force."""
    logger = log.get(component="deliveries")
    config = current()
    drainer = Drainer(store, config, lock=lock)
    try:
        while not stop.is_set():
            if current() is not config:  # reloaded: new sinks from the next round
                config = current()
                drainer.use(config)
                await drainer.aclose_old()
            try:
                due = await drainer.due_at()
                if due is not None and due <= datetime.now(UTC):
                    got = await drainer.round(stop)
                    if got.tried:
                        continue  # more may be due at once
            except Exception:  # noqa: BLE001 - the next round tries again
                logger.exception("deliveries_error")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL)
    finally:
        await drainer.aclose()


def mailbox_event(
    store: Store,
    config: Config,
    failing: bool,
    mb: Mailbox,
    *,
    kind: str | None = None,
    error: str | None = None,
    since: str | None = None,
    failures: int = 0,
) -> None:
    """mailbox.failing or mailbox.recovered for the sinks subscribed, as the state is recorded."""
    if not config.sinks:
        return
    now = datetime.now(UTC)
    started = None
    if since:
        with contextlib.suppress(ValueError):
            started = datetime.fromisoformat(since.replace("Z", "+00:00"))
    event = Event.for_mailbox(
        "mailbox.failing" if failing else "mailbox.recovered",
        deliveries.new_event_id(),
        now,
        mailbox=mb.name,
        host=mb.host,
        kind=kind,
        error=error,
        since=started if started and started.tzinfo else (now if failing else None),
        failures=failures,
    )
    deliveries.queue_event(store, config.sinks, event, now)
