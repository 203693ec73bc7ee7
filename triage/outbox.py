"""The outbox drainer: queued acknowledgements (and operator alerts) out over SMTP.

A row is written in the same transaction as its ticket; this sends it, and
marks it `sent` only after the server accepted it. Temporary failures (4xx,
refused or dropped connections, timeouts) are retried with backoff; a permanent
one (5xx) marks the row `failed` with the server's answer. A row marked `sent`
is never sent again.

Delivery is at least once: if the process dies after the server accepted a
message but before the row was marked, the message is sent again on restart,
with the same Message-ID, so the recipient's mail program shows it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiosmtplib

from triage import log
from triage.endpoints import SecretError, Smtp
from triage.sources.imap import tls_context
from triage.store import Store

RETRY_BASE = 30.0  # seconds; doubled per attempt
RETRY_MAX = 3600.0


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def ensure(store: Store) -> None:
    have = set(store.db["outbox"].columns_dict)
    if "next_attempt_at" not in have:
        store.db["outbox"].add_column("next_attempt_at", str)
    if "envelope_from" not in have:
        store.db["outbox"].add_column("envelope_from", str)


@dataclass(frozen=True, slots=True)
class Result:
    sent: int = 0
    deferred: int = 0
    failed: int = 0


class Sender:
    """One SMTP relay; connects per drain and sends each due row."""

    def __init__(self, smtp: Smtp, envelope_from: str) -> None:
        self.smtp = smtp
        self.envelope_from = envelope_from

    async def send(self, to: str, raw: bytes) -> None:
        cfg = self.smtp
        password = None
        if cfg.username and cfg.secret is not None:
            password = await asyncio.to_thread(cfg.secret.reveal)
        context = tls_context(cfg.ca_file) if cfg.tls != "none" else None
        client = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            use_tls=cfg.tls == "tls",
            start_tls=cfg.tls == "starttls",
            tls_context=context,
            timeout=cfg.timeout,
            validate_certs=cfg.tls != "none",
        )
        async with client:
            if cfg.username and password is not None:
                await client.login(cfg.username, password)
            await client.sendmail(self.envelope_from, [to], raw)


def classify(exc: BaseException) -> tuple[bool, str]:
    """(permanent, what the server or network said)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        text = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
        return all(500 <= c < 600 for c in codes), text
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return 500 <= exc.code < 600, f"{exc.code} {exc.message}"
    if isinstance(exc, SecretError):
        return False, f"cannot read the SMTP password: {exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return False, f"certificate not trusted: {exc.verify_message}"
    return False, f"{type(exc).__name__}: {exc}"


async def drain(
    store: Store,
    sender: Sender,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    limit: int = 100,
    lock: asyncio.Lock | None = None,
) -> Result:
    """Send every due pending row once; return what happened.

    `lock` guards the database against the daemon's open batches: it is held
    while rows are read and marked, never while talking to the server.
    """
    logger = log.get(component="outbox")
    async with lock or contextlib.nullcontext():
        rows = store.conn.execute(
            "SELECT id, to_addr, raw, attempts FROM outbox WHERE status = 'pending'"
            " AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY id LIMIT ?",
            (_iso(now()), limit),
        ).fetchall()
    sent = deferred = failed = 0
    for row_id, to, raw, attempts in rows:
        try:
            await sender.send(to, raw.encode("utf-8") if isinstance(raw, str) else raw)
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on its row
            permanent, said = classify(exc)
            async with lock or contextlib.nullcontext():
                _record_failure(store, row_id, attempts, permanent, said, now())
            if permanent:
                logger.warning("outbox_failed", row=row_id, to=to, error=said)
                failed += 1
            else:
                logger.info("outbox_deferred", row=row_id, to=to, error=said, attempt=attempts + 1)
                deferred += 1
                if not isinstance(exc, aiosmtplib.SMTPResponseException):
                    break  # the relay is away: leave the rest for the next round
            continue
        async with lock or contextlib.nullcontext():
            mark_sent(store, row_id, now())
        logger.info("auto_reply_sent", row=row_id, to=to)
        sent += 1
    return Result(sent, deferred, failed)


def _record_failure(
    store: Store, row_id: int, attempts: int, permanent: bool, said: str, at: datetime
) -> None:
    if permanent:
        store.conn.execute(
            "UPDATE outbox SET status = 'failed', attempts = ?, last_error = ? WHERE id = ?",
            (attempts + 1, said[:500], row_id),
        )
        return
    wait = min(RETRY_MAX, RETRY_BASE * 2**attempts)
    store.conn.execute(
        "UPDATE outbox SET attempts = ?, last_error = ?, next_attempt_at = ? WHERE id = ?",
        (attempts + 1, said[:500], _iso(at + timedelta(seconds=wait)), row_id),
    )


def mark_sent(store: Store, row_id: int, at: datetime) -> None:
    store.conn.execute(
        "UPDATE outbox SET status = 'sent', sent_at = ? WHERE id = ?", (_iso(at), row_id)
    )
    store.conn.execute(
        "INSERT INTO events (ticket_id, message_key, kind, at, detail)"
        " SELECT ticket_id, NULL, 'auto_reply_sent', ?, json_object('outbox', id, 'to', to_addr) FROM outbox WHERE id = ?",
        (_iso(at), row_id),
    )


def retry(store: Store, row_id: int) -> bool:
    """Put a failed row back in the queue; False when there is no such failed row."""
    cur = store.conn.execute(
        "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = NULL"
        " WHERE id = ? AND status = 'failed'",
        (row_id,),
    )
    return cur.rowcount == 1
