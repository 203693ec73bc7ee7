"""When a delivery is tried again, and when it is given up. Pure: the caller passes the clock
and the jitter (a number in [0, 1) from its own random source).

Without a Retry-After, the wait grows four-fold from BASE, capped at CAP, and is spread by
±25 % so that deliveries failing together do not come back together (the Standard Webhooks
recommendation: exponential backoff with jitter over about a day). An outcome `held` by our
own fault (a secret that cannot be read) waits HELD seconds and does not count as an attempt. With a Retry-After the
receiver's wait is used as given (plus the same spread upward only): it knows when it will
take the request again. After `max_attempts` tries, or at once for a permanent failure, the
row is dead: it stays for `triage outbox` to show and `triage outbox retry` to revive, and
never holds up the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from triage.sinks.base import Outcome, Status

BASE = 5.0  # seconds before the second attempt
FACTOR = 4.0
CAP = 6 * 3600.0  # the longest wait between two attempts
SPREAD = 0.25
HELD = 60.0  # seconds before a row held by our own fault (an unreadable secret) is tried again


@dataclass(frozen=True, slots=True)
class Next:
    """What to write to the row after an attempt."""

    state: str  # sent | pending | dead
    attempts: int  # attempts made, this one included
    at: datetime | None = None  # when to try again (pending only)
    said: str = ""

    @property
    def dead(self) -> bool:
        return self.state == "dead"


def backoff(attempt: int, jitter: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based)."""
    wait = min(CAP, BASE * FACTOR ** max(attempt - 1, 0))
    return wait * (1 - SPREAD + 2 * SPREAD * jitter)


def after(outcome: Outcome, attempt: int, max_attempts: int, now: datetime, jitter: float) -> Next:
    """The row's next state after attempt number `attempt` came to `outcome`."""
    if not 0 <= jitter < 1:
        raise ValueError("jitter must be in [0, 1)")
    if outcome.status is Status.SENT:
        return Next("sent", attempt, None, outcome.said)
    if outcome.status is Status.FAILED:
        return Next("dead", attempt, None, outcome.said)
    if outcome.held:  # not the row's fault: not counted, never given up for it
        return Next(
            "pending", attempt - 1, now + timedelta(seconds=HELD * (1 + jitter)), outcome.said
        )
    if attempt >= max_attempts:
        return Next(
            "dead",
            attempt,
            None,
            f"gave up after {attempt} attempts; last: {outcome.said}",
        )
    if outcome.retry_after is not None:
        wait = outcome.retry_after * (1 + SPREAD * jitter)
    else:
        wait = backoff(attempt, jitter)
    return Next("pending", attempt, now + timedelta(seconds=wait), outcome.said)
