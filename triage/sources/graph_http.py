"""Requests to Microsoft Graph over httpx: tokens, throttling, and whose fault a failure is.

Microsoft's throttling guidance: on 429 (and 503) wait the seconds `Retry-After` names, then
try again; without the header, back off exponentially. Outlook also limits an app to four
requests in flight per mailbox, so every request here passes one semaphore per client.
A 401 with a token msal still thought valid (revoked, or expired early) drops the cached
token and tries once more with a new one; a second 401 is an auth failure. A connection that
drops before an answer is tried again (the requests made here are safe to repeat: a GET, a
PATCH setting a value, a move whose message is then gone, 404, and is reported so).
"""

from __future__ import annotations

import asyncio
import contextlib
import json as json_module
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from triage.sources.graph_auth import GraphError, TokenSource
from triage.sources.imap.connection import tls_context

if TYPE_CHECKING:  # imported by the client, when a Graph mailbox is used
    import httpx

GRAPH_URL = "https://graph.microsoft.com/v1.0"
CONCURRENCY = 4  # Outlook's limit of requests in flight per app and mailbox
RETRY_AFTER_MAX = 300.0  # a Retry-After beyond this is waited in several rounds, never ignored


@dataclass(frozen=True, slots=True)
class Answer:
    """A response read to its end, or to `limit` bytes (then `body` is None: not kept)."""

    status: int
    headers: httpx.Headers
    body: bytes | None
    size: int  # bytes read; the Content-Length when the body was over the limit

    def json(self) -> dict:
        try:
            value = json_module.loads(self.body or b"")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    @property
    def text(self) -> str:
        return (self.body or b"").decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Retries:
    """How long throttling and dropped connections are ridden out before giving up."""

    attempts: int = 8  # per request, 429/503/dropped connection together
    budget: float = 600.0  # seconds of waiting per request, all attempts together
    backoff: float = 1.0  # first wait without Retry-After; doubles, with jitter


class GraphClient:
    """One httpx client for one app; `request` returns the response or raises GraphError."""

    def __init__(
        self,
        tokens: TokenSource,
        graph_url: str = GRAPH_URL,
        *,
        ca_file: str | None = None,
        timeout: float = 30.0,
        retries: Retries = Retries(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.tokens = tokens
        self.graph_url = graph_url.rstrip("/")
        self.retries = retries
        self.sleep = sleep
        self.waited = 0.0  # seconds spent waiting for throttling, for logs and tests
        self.throttled = 0  # 429/503 answers seen
        self._gate = asyncio.Semaphore(CONCURRENCY)
        import httpx

        self._http = httpx.AsyncClient(
            verify=tls_context(ca_file),
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY),
            headers={"User-Agent": "triage"},
        )

    async def close(self) -> None:
        await self._http.aclose()

    def url(self, path: str) -> str:
        """`path` under the Graph root, or a full link Graph gave (nextLink, deltaLink).

        A full link must point at the configured Graph host: the bearer token goes with
        every request, and a link from anywhere else (a database edited by hand, a Graph
        URL changed in the config) must not carry it there."""
        if not path.startswith(("https://", "http://")):
            return f"{self.graph_url}/{path.lstrip('/')}"
        if _origin(path) != _origin(self.graph_url):
            raise GraphError(
                "protocol",
                f"a link to {_origin(path)} is not on the Graph host {_origin(self.graph_url)}",
                code="ForeignLink",
            )
        return path

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: object = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 202, 204),
        limit: int | None = None,
        idempotent: bool = True,
    ) -> Answer:
        """Send one request, riding out throttling; a status outside `ok` raises GraphError.

        With `limit`, a body longer than that many bytes is not read further (its answer's
        body is None): a message over the size limit is never held in memory whole.
        Not `idempotent` (sendMail): a connection lost after the request went out is not
        tried again, and raises GraphError("sent_maybe"): Graph may have taken it."""
        import httpx

        url = self.url(path)
        waited = 0.0
        renewed = False
        attempt = 0
        while True:
            attempt += 1
            token = await self.tokens.token()
            sent = {"Authorization": f"Bearer {token}", **(headers or {})}
            try:
                async with self._gate:
                    answer = await self._exchange(method, url, json, content, sent, limit)
            except (httpx.TransportError, ssl.SSLError) as exc:
                unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if not idempotent and not unsent:
                    raise GraphError(
                        "sent_maybe", f"{method} {_shown(url)}: {type(exc).__name__}: {exc}"
                    ) from None
                if attempt >= self.retries.attempts or unsent:
                    raise GraphError(
                        "connect", f"{method} {_shown(url)}: {type(exc).__name__}: {exc}"
                    ) from None
                delay = self._backoff(attempt)
            else:
                if answer.status in ok:
                    return answer
                if answer.status == 401 and not renewed:
                    renewed = True  # a token msal believed in: get a fresh one, once
                    self.tokens.forget()
                    continue
                if answer.status not in (429, 503, 504):
                    raise failure(method, url, answer)
                self.throttled += 1
                if attempt >= self.retries.attempts:
                    raise failure(method, url, answer, kind="throttled")
                delay = _retry_after(answer) or self._backoff(attempt)
            if waited + delay > self.retries.budget:
                raise GraphError(
                    "throttled",
                    f"{method} {_shown(url)}: still throttled after {waited:g} s of waiting "
                    f"({attempt} attempts); Graph asked for {delay:g} s more",
                )
            waited += delay
            self.waited += delay
            await self.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        return self.retries.backoff * (2 ** (attempt - 1)) * random.uniform(0.5, 1.0)

    async def _exchange(self, method, url, json, content, headers, limit) -> Answer:
        request = self._http.build_request(method, url, json=json, content=content, headers=headers)
        response = await self._http.send(request, stream=True)
        try:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if limit is not None and size > limit:
                    declared = response.headers.get("Content-Length", "")
                    size = int(declared) if declared.isdigit() else size
                    return Answer(response.status_code, response.headers, None, size)
                chunks.append(chunk)
            return Answer(response.status_code, response.headers, b"".join(chunks), size)
        finally:
            await response.aclose()


def _retry_after(answer: Answer) -> float | None:
    value = answer.headers.get("Retry-After", "").strip()
    with contextlib.suppress(ValueError):
        return min(max(float(value), 0.0), RETRY_AFTER_MAX)
    return None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _shown(url: str) -> str:
    """A URL for logs: without its query (state tokens are long and say nothing to people)."""
    return url.split("?", 1)[0]


def failure(method: str, url: str, answer: Answer, kind: str | None = None) -> GraphError:
    """GraphError for a refused request, with Graph's code and message and what to look at."""
    code, message = "", answer.text[:300]
    error = answer.json().get("error")
    if isinstance(error, dict):
        code, message = str(error.get("code", "")), str(error.get("message", ""))[:300]
    status = answer.status
    if kind is None:
        if status == 401:
            kind = "auth"
        elif (
            status == 403
            or status == 404
            and code in ("ErrorInvalidUser", "MailboxNotEnabledForRESTAPI")
        ):
            kind = "config"
        else:
            kind = "protocol"
    said = f"{status} {code}: {message}" if code else f"{status}: {message}"
    return GraphError(kind, f"{method} {_shown(url)}: {said}", status=status, code=code)
