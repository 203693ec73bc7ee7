"""The Sink protocol: what the outbox drainer hands a sink, and what the sink answers.

A sink takes one `Delivery` (one outbox row: an event for one sink, with its stable id and
how many times it was tried) and returns an `Outcome`: sent, retry later (with the wait the
receiver asked for, if it named one) or failed for good, always with what the receiver
answered. A sink never raises for a receiver's behaviour and never touches the database:
the drainer records the outcome and schedules the next attempt (`triage.sinks.schedule`).

`classify` turns an HTTP answer into an outcome the same way for every HTTP sink: 2xx sent;
408, 429 and 5xx retry (Retry-After honoured, in seconds or as an HTTP date); any
other answer (3xx, 4xx) failed: the same request would get the same answer, so only a
change of configuration or data helps, and retrying would only hold the row.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Protocol, runtime_checkable

from triage.sinks.events import Event, Subscription, delivery_id

SAID_MAX = 500  # characters of the receiver's answer kept with an outcome
RETRY_AFTER_MAX = 24 * 3600.0  # a receiver asking for more than a day gets a day


class Status(enum.StrEnum):
    SENT = "sent"
    RETRY = "retry"  # failed for now: try again later
    FAILED = "failed"  # failed for good: dead letter


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row as a sink sees it."""

    id: str  # stable per (event, sink): a resend carries the same id
    sink: str
    event: Event
    attempt: int = 1  # 1 for the first try

    @classmethod
    def first(cls, event: Event, sink: str) -> Delivery:
        return cls(delivery_id(event.id, sink), sink, event, 1)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a delivery came to, and what the receiver said (for `triage outbox`)."""

    status: Status
    said: str = ""  # the receiver's answer (status line, a bit of the body) or our reason
    code: int | None = None  # the HTTP status, when there was one
    retry_after: float | None = None  # seconds the receiver asked us to wait
    remote: str | None = None  # what the receiver calls it (a PSA ticket id)
    held: bool = False  # retry, and the attempt does not count: the fault is ours, not the row's

    @classmethod
    def sent(cls, said: str = "", code: int | None = None, remote: str | None = None) -> Outcome:
        return cls(Status.SENT, _cut(said), code, None, remote)

    @classmethod
    def retry(cls, said: str, code: int | None = None, retry_after: float | None = None) -> Outcome:
        return cls(Status.RETRY, _cut(said), code, retry_after)

    @classmethod
    def failed(cls, said: str, code: int | None = None) -> Outcome:
        return cls(Status.FAILED, _cut(said), code)

    @classmethod
    def ours(cls, said: str) -> Outcome:
        """Nothing was sent because of our side (a secret that cannot be read): the row is
        not to blame, so the attempt does not count toward giving up."""
        return cls(Status.RETRY, _cut(said), held=True)

    @property
    def ok(self) -> bool:
        return self.status is Status.SENT


@runtime_checkable
class Sink(Protocol):
    """Anything the outbox drains into."""

    name: str
    kind: str
    subscription: Subscription

    async def deliver(self, delivery: Delivery) -> Outcome:
        """Send one delivery; never raises for what the receiver does."""
        ...

    async def aclose(self) -> None:
        """Close connections; the sink is not used afterwards."""
        ...


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SAID_MAX else text[: SAID_MAX - 1] + "…"


def retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from `now` that a Retry-After header asks for (RFC 9110 10.2.3).

    Either a number of seconds or an HTTP date; None when absent or unreadable. Never
    negative, and capped at RETRY_AFTER_MAX so a mistaken header cannot park a row for years.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_MAX)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return min(max((when - now).total_seconds(), 0.0), RETRY_AFTER_MAX)


RETRY_CODES = frozenset({408, 429})


def classify(
    code: int, headers: Mapping[str, str], body: bytes | str, now: datetime, what: str = ""
) -> Outcome:
    """The outcome of an HTTP answer; `what` names the request in the recorded answer."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    said = f"{what}{' ' if what else ''}HTTP {code}" + (f": {text.strip()}" if text.strip() else "")
    if 200 <= code < 300:
        return Outcome.sent(said, code)
    if code in RETRY_CODES or code >= 500:
        return Outcome.retry(said, code, retry_after(_header(headers, "retry-after"), now))
    if 300 <= code < 400:
        where = _header(headers, "location")
        return Outcome.failed(
            f"{said} (redirects are not followed: set the url to {where})"
            if where
            else f"{said} (redirects are not followed: correct the url)",
            code,
        )
    return Outcome.failed(said, code)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    getter = getattr(headers, "get", None)
    found = getter(name) if getter else None
    if found is None:  # a plain dict with other capitalisation
        for key, value in headers.items():
            if key.lower() == name:
                return value
    return found
