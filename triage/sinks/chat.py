"""Slack and Teams incoming webhooks (`kind = "slack"`, `"teams"`): the on-call channel.

The webhook's URL is its credential (whoever has it can post), so it comes from a secret
source and never appears in an outcome or a log line. Slack answers 200 `ok`, 4xx with a
reason word (`invalid_payload`, `channel_is_archived` ...) and 429 with Retry-After when a
webhook posts faster than one message a second. Teams Workflows answer 202; Teams' older
connectors answered 200 even when throttled, with "HTTP error 429" in the body, which is
taken here as the 429 it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx

from triage.config.endpoints import SecretError
from triage.sinks.base import Delivery, Outcome, Status, classify
from triage.sinks.client import HttpSink, exchange, unreadable_secret
from triage.sinks.config import ChatSettings, SinkConfig
from triage.sinks.events import Event
from triage.sinks.messages import alert, slack_payload, teams_payload

_THROTTLED = "HTTP error 429"


class ChatSink(HttpSink):
    """Posts each event as a short alert to a Slack or Teams incoming webhook."""

    def __init__(
        self,
        config: SinkConfig,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if config.kind not in ("slack", "teams") or not isinstance(config.settings, ChatSettings):
            raise TypeError(f"{config.name}: not a slack or teams sink")
        super().__init__(config, clock=clock, client=client)
        self.kind = config.kind
        self.settings = config.settings
        self.zone = ZoneInfo(config.zone)
        self._url: str | None = None

    def payload(self, delivery: Delivery) -> bytes:
        return json.dumps(
            chat_payload(self.kind, delivery.event, self.zone),
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")

    async def deliver(self, delivery: Delivery) -> Outcome:
        try:
            if self._url is None:
                self._url = self.settings.url.reveal()
        except SecretError as exc:
            return unreadable_secret(exc, f"{self.name}: webhook URL {self.settings.url}")
        await self.pace.wait()
        answer = await exchange(
            self.client,
            "POST",
            self._url,
            total=self.config.timeout,
            content=self.payload(delivery),
            headers={"content-type": "application/json"},
            what="POST",
        )
        if isinstance(answer, Outcome):
            return _without(answer, self._url)
        outcome = classify(answer.code, answer.headers, answer.body[:2000], self.clock(), "POST")
        if outcome.status is Status.SENT and _THROTTLED.encode() in answer.body:
            return Outcome.retry(outcome.said, 429, 60.0)
        return outcome

    async def aclose(self) -> None:
        await self.client.aclose()


def chat_payload(kind: str, event: Event, zone: ZoneInfo) -> dict:
    """The JSON a `kind` ("slack" or "teams") sink posts for `event`. Pure."""
    shaped = alert(event, zone)
    return slack_payload(shaped) if kind == "slack" else teams_payload(shaped)


def _without(outcome: Outcome, url: str) -> Outcome:
    """The outcome with the URL (a credential) taken out of what it says."""
    if url not in outcome.said:
        return outcome
    return replace(outcome, said=outcome.said.replace(url, "<webhook url>"))
