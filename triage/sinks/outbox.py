"""The outbox drainer: queued acknowledgements and operator alerts out over SMTP, each row once.

A row is written in the same transaction as its ticket. A drainer claims a row before sending
it (status `sending`, its owner, a lease expiry) in one transaction, so two drainers (the
daemon and `triage outbox send --once`, or two of either) never send one row. It marks the
row `sent` only after the relay accepted it. A claim whose drainer died comes back: at once
when that drainer ran on this host and its process is gone, else when the lease runs out.

Operator alerts go before acknowledgements. A row's own failure (a refused recipient, an
address the relay cannot carry) fails or defers that row, and the round goes on with the
next; a failure of the relay (connection, TLS, login) stops the round and leaves every row
queued as it was. The relay's health is kept in `relay_state` for `triage status`, and its
changes are logged as `relay_failing` and `relay_recovered`.

Delivery is at least once: if the process dies after the relay accepted a message but before
the row was marked, the message is sent again (with the same Message-ID) when the claim
comes back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from triage import log
from triage.sinks.smtp import RelayError, RowError, Sender, stamped
from triage.store.outbox import (
    Row,
    claim,
    mark_sent,
    record_failure,
    record_relay,
    recover,
    relay_health,
    release,
    retry,
)
from triage.store.sqlite import Store

__all__ = [
    "Result",
    "Sender",
    "drain",
    "mark_sent",
    "relay_health",
    "retry",
    "sender_for",
]


def sender_for(config) -> Sender:
    """The acknowledgements' sender: the [smtp] relay, or Graph's sendMail with
    `[smtp] kind = "graph"` (the same face: `session()`, `lease`, `owner`, `where`)."""
    if config.graph_sending is not None:
        from triage.sinks.graph_mail import GraphSender

        return GraphSender(config.graph_sending, config.support_address)  # type: ignore[return-value]
    assert config.smtp is not None
    return Sender(config.smtp, config.support_address)


GIVE_UP = timedelta(days=5)  # a row failing only for now this long after it was queued fails


@dataclass(frozen=True, slots=True)
class Result:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    relay_error: str | None = None  # the relay failed: the round stopped, the rows wait
    reached: bool = False  # the relay was connected to (and logged in to) this round


async def drain(
    store: Store,
    sender: Sender,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    limit: int = 100,
    lock=None,
    owner: str | None = None,
    stop=None,
) -> Result:
    """Claim and send up to `limit` due rows, one at a time; return what happened.

    `lock` (an asyncio.Lock) guards a database connection shared with the daemon's
    batches: it is held while rows are claimed and marked, never while talking to the relay.
    `stop` (an asyncio.Event): once set, no further row is claimed.
    """
    logger = log.get(component="outbox")
    owner = owner or sender.owner
    guard = lock or contextlib.nullcontext()
    async with guard:
        back = recover(store)
    if back:
        logger.info("outbox_claims_recovered", rows=back)
    session = sender.session()
    sent = deferred = failed = 0
    relay_error: RelayError | None = None
    try:
        for _ in range(limit):
            if stop is not None and stop.is_set():
                break
            async with guard:
                row = claim(store, owner, now(), sender.lease)
            if row is None:
                break
            try:
                await session.send(row.to, stamped(row.raw, now(), sender.domain))
            except RelayError as exc:
                async with guard:
                    release(store, row.id, owner)
                relay_error = exc
                break
            except Exception as exc:  # noqa: BLE001 - every other failure is this row's
                problem = exc if isinstance(exc, RowError) else RowError(False, f"{exc!r}")
                permanent, said = _verdict(row, problem, now())
                async with guard:
                    record_failure(store, row, owner, permanent, said, now())
                if permanent:
                    logger.warning("outbox_failed", row=row.id, to=row.to, error=said)
                    failed += 1
                else:
                    logger.info(
                        "outbox_deferred",
                        row=row.id,
                        to=row.to,
                        error=said,
                        attempt=row.attempts + 1,
                    )
                    deferred += 1
                continue
            async with guard:
                mark_sent(store, row.id, now(), owner)
            logger.info("auto_reply_sent", row=row.id, to=row.to)
            sent += 1
    finally:
        await session.close()
    async with guard:
        change = record_relay(store, relay_error, session.reached, now())
    _log_relay(logger, change, relay_error, sender)
    return Result(
        sent, deferred, failed, relay_error.said if relay_error else None, session.reached
    )


def _log_relay(logger, change: str | None, error: RelayError | None, sender: Sender) -> None:
    where = sender.where
    if change == "failing" and error is not None:
        logger.error("relay_failing", relay=where, kind=error.kind, error=error.said)
    elif error is not None:
        logger.info("relay_still_failing", relay=where, kind=error.kind, error=error.said)
    elif change == "recovered":
        logger.info("relay_recovered", relay=where)


def _verdict(row: Row, problem: RowError, at: datetime) -> tuple[bool, str]:
    """(permanent, what to record): a row failing only for now is given up after GIVE_UP."""
    if problem.permanent or row.queued_at is None or at - row.queued_at < GIVE_UP:
        return problem.permanent, problem.said
    return True, (
        f"{problem.said[:300]} (gave up: failing since it was queued"
        f" {row.queued_at:%Y-%m-%d %H:%M} UTC, {row.attempts + 1} attempts; fix: correct the"
        " cause, then `triage outbox retry`)"
    )
