"""Signed webhooks (`kind = "webhook"`): the event's JSON, POSTed and signed per Standard Webhooks.

Headers (Standard Webhooks 1.0): `webhook-id` (the delivery's id, the same on every resend,
so a receiver can drop a repeat), `webhook-timestamp` (this attempt's time, integer Unix
seconds: a receiver refuses stale ones against replay) and `webhook-signature`:
`v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), where the key is the secret
`whsec_<base64>` decoded. The secret's file may hold several secrets (one per line, the new
one first) while a receiver moves from one to the next: each signs, and the signatures go
space-separated in the one header, as the specification provides for rotation.

Signing uses the standard library's HMAC; the tests check every signature with the
specification's reference verifier (the `standardwebhooks` package).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import httpx

from triage.config.endpoints import SecretError
from triage.errors import TriageError
from triage.sinks.base import Delivery, Outcome, classify
from triage.sinks.client import HttpSink, exchange, unreadable_secret
from triage.sinks.config import SinkConfig, WebhookSettings

PREFIX = "whsec_"
KEY_MIN, KEY_MAX = 24, 64  # bytes: the specification's bounds for a symmetric secret


class WebhookSecretError(TriageError, ValueError):
    """A signing-secret file that cannot be used; the message says what a secret looks like."""


def parse_secrets(text: str) -> tuple[bytes, ...]:
    """The keys in a secret file: `whsec_<base64>` values, one per line (or space-separated)."""
    keys = []
    for word in text.split():
        if not word.startswith(PREFIX):
            raise WebhookSecretError(f"a signing secret starts with {PREFIX!r} followed by base64")
        try:
            key = base64.b64decode(word[len(PREFIX) :], validate=True)
        except binascii.Error:
            raise WebhookSecretError("the part after whsec_ is not base64") from None
        if not KEY_MIN <= len(key) <= KEY_MAX:
            raise WebhookSecretError(
                f"a signing secret is {KEY_MIN} to {KEY_MAX} random bytes; this one is {len(key)}"
            )
        keys.append(key)
    if not keys:
        raise WebhookSecretError("the secret is empty")
    return tuple(keys)


def new_secret(random: bytes) -> str:
    """`whsec_` + base64 of `random` (32 bytes from `secrets.token_bytes` is the usual)."""
    if not KEY_MIN <= len(random) <= KEY_MAX:
        raise WebhookSecretError(f"a signing secret is {KEY_MIN} to {KEY_MAX} bytes")
    return PREFIX + base64.b64encode(random).decode("ascii")


def signature(keys: Iterable[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header's value: one `v1,<base64>` per key, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")
        for key in keys
    )


def signed_headers(keys: Iterable[bytes], msg_id: str, timestamp: int, body: bytes) -> dict:
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(keys, msg_id, timestamp, body),
    }


class WebhookSink(HttpSink):
    """POSTs each event's body, signed, to one URL."""

    kind = "webhook"

    def __init__(
        self,
        config: SinkConfig,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not isinstance(config.settings, WebhookSettings):
            raise TypeError(f"{config.name}: not a webhook sink")
        super().__init__(config, clock=clock, client=client)
        self.settings = config.settings
        self._keys: tuple[bytes, ...] | None = None

    def keys(self) -> tuple[bytes, ...]:
        """The signing keys, read from their source once (a reload makes a new sink)."""
        if self._keys is None:
            self._keys = parse_secrets(self.settings.secret.reveal())
        return self._keys

    async def deliver(self, delivery: Delivery) -> Outcome:
        try:
            keys = self.keys()
        except (SecretError, WebhookSecretError) as exc:
            return unreadable_secret(exc, f"{self.name}: signing secret {self.settings.secret}")
        await self.pace.wait()
        body = delivery.event.body()
        stamp = int(self.clock().timestamp())
        answer = await exchange(
            self.client,
            "POST",
            self.settings.url,
            total=self.config.timeout,
            content=body,
            headers=signed_headers(keys, delivery.id, stamp, body),
            what="POST",
        )
        if isinstance(answer, Outcome):
            return answer
        return classify(answer.code, answer.headers, answer.body[:2000], self.clock(), "POST")

    async def aclose(self) -> None:
        await self.client.aclose()
