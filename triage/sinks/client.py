"""The HTTP edge every HTTP sink shares: one pooled client per sink, a pace, a bounded exchange.

A network failure (refused, reset, closed before the answer, a timeout) is the receiver's
outage, not the row's: it comes back as `Outcome.retry` with what happened. The whole
exchange is bounded by the sink's timeout (httpx's own timeouts bound each read, so a
receiver dripping one byte at a time would otherwise hold a delivery forever), and an
answer's body is read up to ANSWER_MAX bytes. Redirects are never followed (Standard
Webhooks: update the URL instead), so a 3xx is an answer like any other.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING

import httpx

from triage.config.endpoints import SecretError
from triage.sinks.base import Outcome

if TYPE_CHECKING:
    from triage.sinks.config import SinkConfig
    from triage.sinks.events import Subscription

ANSWER_MAX = 1 << 20  # bytes of an answer's body read at most


def user_agent() -> str:
    try:
        return f"triage/{metadata.version('triage')}"
    except metadata.PackageNotFoundError:
        return "triage"


def make_client(
    timeout: float, ca_file: str | None = None, connections: int = 16
) -> httpx.AsyncClient:
    """A pooled client: keep-alive, no redirects, certificates checked (`ca_file` for a
    private CA), proxies from the environment as usual (HTTPS_PROXY, NO_PROXY)."""
    verify: ssl.SSLContext | bool = True
    if ca_file:
        verify = ssl.create_default_context(cafile=ca_file)
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        verify=verify,
        follow_redirects=False,
        headers={"user-agent": user_agent()},
    )


@dataclass(frozen=True, slots=True)
class Answer:
    code: int
    headers: httpx.Headers
    body: bytes


async def exchange(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    total: float,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    what: str = "",
) -> Answer | Outcome:
    """One request; an `Answer`, or `Outcome.retry` when no answer came."""
    label = f"{what} " if what else ""
    try:
        async with asyncio.timeout(total):
            async with client.stream(
                method, url, content=content, headers=headers, params=params
            ) as response:
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) >= ANSWER_MAX:
                        break
                return Answer(response.status_code, response.headers, bytes(body[:ANSWER_MAX]))
    except TimeoutError:
        return Outcome.retry(f"{label}no answer within {total:g} s")
    except httpx.TimeoutException as exc:
        return Outcome.retry(f"{label}{_timeout_kind(exc)} after {total:g} s")
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        return Outcome.failed(f"{label}bad URL: {exc}")
    except httpx.TransportError as exc:
        return Outcome.retry(f"{label}{type(exc).__name__}: {exc or 'connection closed'}")


def _timeout_kind(exc: httpx.TimeoutException) -> str:
    return {
        httpx.ConnectTimeout: "no connection",
        httpx.ReadTimeout: "no answer",
        httpx.WriteTimeout: "could not send",
        httpx.PoolTimeout: "no free connection",
    }.get(type(exc), "timed out")


def unreadable_secret(exc: SecretError, what: str) -> Outcome:
    """A secret that cannot be read is our fault, not the row's: retry, not counted."""
    return Outcome.ours(f"{what}: {exc}; fix the secret's source (the row waits)")


class Pace:
    """At most `rate` request starts per second, shared by every task of one sink."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class HttpSink:
    """What every HTTP sink holds: its table, the clock, one client and the pace of its
    requests; each kind adds its settings (and checks it was given its own kind first)."""

    def __init__(
        self,
        config: SinkConfig,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.subscription: Subscription = config.subscription
        self.clock = clock
        self.client = client or make_client(config.timeout, config.ca_file)
        self.pace = Pace(config.rate_limit)
