"""Change notifications for a watched Graph folder: a hint to run the delta query now.

Graph posts to an HTTPS URL of ours when mail is created in the folder. Notifications are
best effort (Microsoft says they can be late, repeated or lost, and sends a `missed`
lifecycle event when it knows it lost some), so they never carry data here: any valid one
sets the session's hint, and the delta query, run on every poll anyway, stays the truth.

- Subscribing: POST /subscriptions on `users/{id}/mailFolders('{id}')/messages`; Graph first
  checks the URL by posting `?validationToken=...`, which must be echoed as text/plain
  within 10 s. A subscription on mail lives at most a few days; it is renewed (PATCH) when
  half its life is gone, and made again when Graph no longer knows it (404).
- Receiving: a notification's `clientState` must be ours (a random secret per subscription,
  compared in constant time); anything else is counted and ignored.
- Lifecycle events: `reauthorizationRequired` renews at once, `subscriptionRemoved` makes
  a new subscription, `missed` runs the delta query.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

from aiohttp import web

from triage import log
from triage.desk.listen import Listen
from triage.sources.graph_auth import GraphError
from triage.sources.graph_http import GraphClient

LIFETIME = timedelta(minutes=4200)  # under the 4,230 minutes Graph long allowed for mail
RENEW_AT = 0.5  # renew when this share of the lifetime is gone


@dataclass(frozen=True, slots=True)
class Notices:
    """What one POST from Graph asks for (pure: see `read_notices`)."""

    hint: bool = False  # run the delta query now
    renew: frozenset[str] = frozenset()  # subscription ids to renew now
    recreate: frozenset[str] = frozenset()  # subscription ids Graph removed
    rejected: int = 0  # items with a wrong clientState or an unknown subscription


def read_notices(body: bytes, known: dict[str, str]) -> Notices:
    """Read a notification or lifecycle POST; `known` maps subscription id -> clientState.

    Pure, so it is tested with tables: no I/O, no clock.
    """
    try:
        items = json.loads(body).get("value", [])
    except (ValueError, AttributeError):
        return Notices(rejected=1)
    if not isinstance(items, list):
        return Notices(rejected=1)
    hint, rejected = False, 0
    renew: set[str] = set()
    recreate: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            rejected += 1
            continue
        sid = str(item.get("subscriptionId", ""))
        ours = known.get(sid)
        theirs = str(item.get("clientState") or "")
        if ours is None or not hmac.compare_digest(ours.encode(), theirs.encode()):
            rejected += 1
            continue
        event = item.get("lifecycleEvent")
        if event == "reauthorizationRequired":
            renew.add(sid)
        elif event == "subscriptionRemoved":
            recreate.add(sid)
            hint = True  # changes may have gone unannounced since
        elif event == "missed" or event is None:
            hint = True
        else:
            rejected += 1
    return Notices(hint, frozenset(renew), frozenset(recreate), rejected)


@dataclass
class Subscription:
    id: str
    client_state: str
    expires: datetime


@dataclass
class Notifications:
    """One folder's subscription and the endpoint Graph posts to.

    `public_url` is what Graph is told (https, reachable from Microsoft: usually a reverse
    proxy); `listen` is where this process listens for it ("127.0.0.1:8025").
    """

    client: GraphClient
    user: str
    folder_id: str
    public_url: str
    listen: str
    hint: asyncio.Event
    lifetime: timedelta = LIFETIME
    subscription: Subscription | None = None
    rejected: int = 0
    renewals: int = 0
    last_error: GraphError | None = None  # the last failure to subscribe or renew, for logs
    _runner: web.AppRunner | None = field(default=None, repr=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    # -- the endpoint ----------------------------------------------------------------------
    async def start(self) -> None:
        """Listen first: Graph validates the URL while the subscription is being created."""
        app = web.Application(client_max_size=1024 * 1024)
        path = urlsplit(self.public_url).path or "/"
        app.router.add_post(path, self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        listen = Listen.parse(self.listen, where="notify_listen", default_port=8025)
        await web.TCPSite(self._runner, listen.host, listen.port).start()

    async def stop(self) -> None:
        if self.subscription is not None:
            with contextlib.suppress(GraphError):
                await self.client.request(
                    "DELETE", f"subscriptions/{self.subscription.id}", ok=(204, 404)
                )
            self.subscription = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _receive(self, request: web.Request) -> web.Response:
        token = request.query.get("validationToken")
        if token is not None:  # the handshake: the token back, as plain text, at once
            return web.Response(text=token, content_type="text/plain")
        body = await request.read()
        known = {self.subscription.id: self.subscription.client_state} if self.subscription else {}
        notices = read_notices(body, known)
        self.rejected += notices.rejected
        if notices.hint:
            self.hint.set()
        if notices.renew or notices.recreate:
            if notices.recreate:
                self.subscription = None
            else:
                assert self.subscription is not None
                self.subscription.expires = datetime.now(UTC)  # due now
            self._wake.set()
        return web.Response(status=202)  # answered at once: the work is the daemon's

    # -- the subscription ------------------------------------------------------------------
    async def keep(self, stop: asyncio.Event) -> None:
        """Subscribe, then renew before expiry, until `stop`; a failure is retried later,
        and meanwhile polling goes on (the hint is only a hint)."""
        while not stop.is_set():
            delay = 60.0
            try:
                delay = await self.maintain(datetime.now(UTC))
                if self.last_error is not None:
                    log.get(component="graph").info("notify_subscribed", url=self.public_url)
                self.last_error = None
            except GraphError as exc:
                # Polling covers the gap, but a notify_url Graph cannot reach must be seen:
                # said once per new reason, not at every retry.
                if self.last_error is None or str(self.last_error) != str(exc):
                    log.get(component="graph").warning(
                        "notify_subscription_failed", url=self.public_url, error=str(exc)
                    )
                self.last_error = exc
                delay = 60.0
            self._wake.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            try:
                await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()

    async def maintain(self, now: datetime) -> float:
        """Create or renew the subscription as needed; seconds until it next needs a look."""
        sub = self.subscription
        if sub is None:
            await self._create(now)
        elif sub.expires - now <= self.lifetime * (1 - RENEW_AT):
            await self._renew(sub, now)
        assert self.subscription is not None
        due = self.subscription.expires - self.lifetime * (1 - RENEW_AT)
        return max(1.0, (due - now).total_seconds())

    async def _create(self, now: datetime) -> None:
        state = secrets.token_urlsafe(32)  # at most 128 characters, per Graph
        answer = await self.client.request(
            "POST",
            "subscriptions",
            json={
                "changeType": "created",
                "notificationUrl": self.public_url,
                "lifecycleNotificationUrl": self.public_url,
                "resource": f"users/{self.user}/mailFolders('{quote(self.folder_id, safe='')}')/messages",
                "expirationDateTime": _iso(now + self.lifetime),
                "clientState": state,
            },
        )
        body = answer.json()
        self.subscription = Subscription(str(body["id"]), state, _parse(body, now + self.lifetime))

    async def _renew(self, sub: Subscription, now: datetime) -> None:
        try:
            answer = await self.client.request(
                "PATCH",
                f"subscriptions/{sub.id}",
                json={"expirationDateTime": _iso(now + self.lifetime)},
            )
        except GraphError as exc:
            if exc.status != 404:
                raise
            self.subscription = None  # Graph removed it: subscribe again, and look now
            self.hint.set()
            await self._create(now)
            return
        sub.expires = _parse(answer.json(), now + self.lifetime)
        self.renewals += 1


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(body: dict, default: datetime) -> datetime:
    """The expiry Graph granted (it may shorten what was asked), or what was asked."""
    try:
        when = datetime.fromisoformat(str(body.get("expirationDateTime", "")))
    except ValueError:
        return default
    return when if when.tzinfo else when.replace(tzinfo=UTC)
