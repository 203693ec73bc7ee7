"""The delivery drainer: due rows claimed, handed to their sink, the outcome recorded.

A round claims each sink's due rows (at most what the sink's rate limit sends in
ROUND_SECONDS, so a claim's lease covers its wait), in one write transaction: two drainers
(the daemon and `triage outbox send --once`, or two daemons on a shared database) never
hold one row. The rows are delivered concurrently, one after another within a (sink,
ticket) so a ticket's note never overtakes its creation, and each outcome is recorded as
soon as it is known: sent; retried later with backoff and jitter, or the receiver's
Retry-After (triage.sinks.schedule); dead after `max_attempts` or a permanent answer.

A crash between the receiver's answer and the mark leaves the row claimed by a process
that is gone: the next drainer on this host takes it back at once (elsewhere, when the
lease runs out) and sends it again with the same delivery id (`webhook-id`), which the
receiver can recognise.

`lock` (an asyncio.Lock) guards a database connection shared with the daemon's batches:
held while rows are claimed and marked, never while a sink talks to its receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from triage import log
from triage.config import Config
from triage.sinks.base import Delivery, Outcome, Sink
from triage.sinks.config import SinkConfig
from triage.sinks.kinds import make_sink
from triage.sinks.schedule import after
from triage.store import delivery_claims
from triage.store.outbox import owner_id
from triage.store.sqlite import Store

ROUND_SECONDS = 5.0  # a round claims what each sink's rate limit sends in this long
ROUND_MAX = 100  # rows of one sink claimed in one round, at most
CONCURRENCY = 16  # deliveries in flight at once, over every sink


@dataclass
class Result:
    sent: int = 0
    retried: int = 0
    dead: int = 0
    lost: int = 0  # our lease ran out and another drainer took the row
    by_sink: dict[str, int] = field(default_factory=dict)  # rows tried, per sink

    @property
    def tried(self) -> int:
        return self.sent + self.retried + self.dead + self.lost


def build(
    configs: Sequence[SinkConfig],
    triage_config: Config,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> dict[str, Sink]:
    """A sink object per `[[sink]]` table. An email sink without [smtp] has none (`triage
    check` refuses that configuration); its rows wait."""
    out: dict[str, Sink] = {}
    for config in configs:
        if config.kind == "email":
            if triage_config.smtp is None and triage_config.graph_sending is None:
                continue
            from triage.sinks.oncall_mail import MailSink

            out[config.name] = MailSink(config, triage_config, clock=clock)
            continue
        sink = make_sink(config, clock)
        if sink is not None:
            out[config.name] = sink
    return out


class Drainer:
    """Delivers the due rows of the configured sinks; one per process (the sinks pace)."""

    def __init__(
        self,
        store: Store,
        triage_config: Config,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        lock: asyncio.Lock | None = None,
        owner: str | None = None,
        sinks: Mapping[str, Sink] | None = None,
        jitter: Callable[[], float] = random.random,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.store = store
        self.clock = clock
        self.lock = lock
        self.owner = owner or owner_id()
        self.jitter = jitter
        self.concurrency = concurrency
        self.log = log.get(component="deliveries")
        self.configs: tuple[SinkConfig, ...] = ()
        self.sinks: dict[str, Sink] = {}
        self.use(triage_config, sinks)

    def use(self, triage_config: Config, sinks: Mapping[str, Sink] | None = None) -> None:
        """Deliver for `triage_config`'s sinks (after a reload: the old ones are closed by
        `aclose_old`)."""
        self._old = list(self.sinks.values())
        self.triage_config = triage_config
        self.configs = triage_config.sinks
        self.sinks = dict(sinks) if sinks is not None else build(self.configs, triage_config)
        self._by_name = {c.name: c for c in self.configs if c.name in self.sinks}

    async def aclose_old(self) -> None:
        old, self._old = self._old, []
        for sink in old:
            with contextlib.suppress(Exception):
                await sink.aclose()

    async def aclose(self) -> None:
        await self.aclose_old()
        for sink in self.sinks.values():
            with contextlib.suppress(Exception):
                await sink.aclose()

    def _guard(self):
        return self.lock if self.lock is not None else contextlib.nullcontext()

    def limits(self) -> dict[str, int]:
        """Rows each sink may claim in one round."""
        return {
            name: max(1, min(ROUND_MAX, math.ceil(c.rate_limit * ROUND_SECONDS)))
            for name, c in self._by_name.items()
        }

    def lease(self, limits: Mapping[str, int]) -> timedelta:
        """Long enough for every claimed row to be tried one after another, with room."""
        worst = max(
            (self._by_name[n].timeout + 1 / self._by_name[n].rate_limit) * k
            for n, k in limits.items()
        )
        return timedelta(seconds=worst + 60)

    async def due_at(self) -> datetime | None:
        """When the next row of a known sink is due (None: nothing waits)."""
        if not self._by_name:  # no sinks: nothing to ask the database (nor to take its lock for)
            return None
        async with self._guard():
            return delivery_claims.next_due(self.store, list(self._by_name))

    async def round(self, stop: asyncio.Event | None = None) -> Result:
        """Claim what is due, deliver it, record each outcome; what happened."""
        result = Result()
        if not self._by_name:
            return result
        limits = self.limits()
        async with self._guard():
            back = delivery_claims.recover(self.store)
            rows = delivery_claims.claim(
                self.store, limits, self.owner, self.clock(), self.lease(limits)
            )
        if back:
            self.log.info("delivery_claims_recovered", rows=back)
        if not rows:
            return result
        groups: dict[tuple[str, str | None], list[delivery_claims.Row]] = {}
        for row in rows:
            groups.setdefault((row.sink, row.event.ticket), []).append(row)
        gate = asyncio.Semaphore(self.concurrency)

        async def one_group(group: list[delivery_claims.Row]) -> None:
            for n, row in enumerate(group):
                if stop is not None and stop.is_set():
                    async with self._guard():
                        delivery_claims.release(self.store, [r.id for r in group[n:]], self.owner)
                    return
                async with gate:
                    await self._one(row, result)

        await asyncio.gather(*(one_group(g) for g in groups.values()))
        return result

    async def _one(self, row: delivery_claims.Row, result: Result) -> None:
        sink = self.sinks[row.sink]
        config = self._by_name[row.sink]
        delivery = Delivery(row.delivery_id, row.sink, row.event, row.attempts + 1)
        try:
            outcome = await sink.deliver(delivery)
        except Exception as exc:  # noqa: BLE001 - a sink's own fault is this row's retry
            self.log.exception("delivery_error", sink=row.sink, row=row.id)
            outcome = Outcome.retry(f"{type(exc).__name__}: {exc}")
        now = self.clock()
        nxt = after(outcome, row.attempts + 1, config.max_attempts, now, self.jitter())
        async with self._guard():
            kept = delivery_claims.finish(
                self.store,
                row.id,
                self.owner,
                nxt.state,
                nxt.attempts,
                now,
                nxt.at,
                nxt.said,
                outcome.code,
                outcome.remote,
            )
        result.by_sink[row.sink] = result.by_sink.get(row.sink, 0) + 1
        fields = {
            "sink": row.sink,
            "row": row.id,
            "event_type": row.event.type,
            "ticket": row.event.ticket,
            "delivery_id": row.delivery_id,
        }
        if not kept:
            result.lost += 1
            self.log.warning("delivery_claim_lost", **fields)
        elif nxt.state == "sent":
            result.sent += 1
            self.log.info("delivery_sent", **fields, said=outcome.said)
        elif nxt.dead:
            result.dead += 1
            self.log.warning("delivery_dead", **fields, attempts=nxt.attempts, said=nxt.said)
        else:
            result.retried += 1
            self.log.info(
                "delivery_retry",
                **fields,
                attempts=nxt.attempts,
                at=nxt.at.isoformat() if nxt.at else None,
                said=nxt.said,
            )

    async def drain(self, stop: asyncio.Event | None = None) -> Result:
        """Rounds until nothing is due: what `triage outbox send --once` runs."""
        total = Result()
        while stop is None or not stop.is_set():
            got = await self.round(stop)
            for name in ("sent", "retried", "dead", "lost"):
                setattr(total, name, getattr(total, name) + getattr(got, name))
            for sink, n in got.by_sink.items():
                total.by_sink[sink] = total.by_sink.get(sink, 0) + n
            if got.tried == 0:
                break
        return total
