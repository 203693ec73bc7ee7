"""The SMTP relay: one connection per drain round, and whose fault a failure is.

A failure of the relay itself (no connection, TLS, a refused login, a password that cannot be
read, a refused envelope sender, 421, a refusal to relay for us) is `RelayError`: nothing is wrong with the row in hand,
so the round stops and every row stays queued. A failure of one message (a refused
recipient, refused content, an address the relay cannot carry) is `RowError`: that row fails
or waits, and the round goes on with the next.

Non-ASCII addresses (RFC 6531/6532) travel with SMTPUTF8 when the relay offers it; when it
does not, the row fails permanently with that reason: it could never be sent through this
relay, and retrying it would only hold up the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import ssl
from datetime import datetime, timedelta
from email.utils import format_datetime

import aiosmtplib

from triage.config.endpoints import SecretError, Smtp
from triage.errors import RecordedError
from triage.sources.imap import tls_context
from triage.store.outbox import owner_id

LEASE_TIMEOUTS = 10  # a claimed row is its drainer's for this many SMTP timeouts
# A relay that will not relay for us answers every recipient so (Postfix "Relay access
# denied", Exim "relay not permitted", Exchange "Unable to relay"): its configuration, or
# ours (no login), not the address.
_NO_RELAY = re.compile(r"relay(?:ing)? (?:access )?(?:denied|not permitted)|unable to relay", re.I)


class RelayError(RecordedError):
    """The relay failed, not the row: stop the round, keep the rows queued."""

    def __init__(self, kind: str, said: str) -> None:
        super().__init__(said)
        self.kind = kind  # connect | tls | auth | secret | refused
        self.said = said


class RowError(RecordedError):
    """This message failed; the others may still go."""

    def __init__(self, permanent: bool, said: str) -> None:
        super().__init__(said)
        self.permanent = permanent
        self.said = said


def _said(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _untrusted(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate error behind `exc`, however the client wrapped it."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 10:
        if isinstance(cur, ssl.SSLCertVerificationError):
            return cur
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


def needs_utf8(envelope_from: str, to: str, raw: bytes) -> bool:
    """True when an address or a header is not ASCII: only SMTPUTF8 can carry the message."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    return not (envelope_from.isascii() and to.isascii() and head.isascii())


_DATE = re.compile(rb"^date:", re.IGNORECASE)
_MESSAGE_ID = re.compile(rb"^message-id:", re.IGNORECASE)


def stamped(raw: bytes, at: datetime, domain: str) -> bytes:
    """`raw` with its Date set to `at` (when it is sent, not when it was queued), and a
    Message-ID added if it has none (rows queued by older releases). Pure."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:  # no body separator: the whole thing is a header block
        head, body = raw.rstrip(b"\r\n"), b""
    lines = head.split(b"\r\n")
    kept: list[bytes] = []
    in_date = False
    for line in lines:
        if line[:1] in (b" ", b"\t"):  # a folded continuation
            if not in_date:
                kept.append(line)
            continue
        in_date = bool(_DATE.match(line))
        if not in_date:
            kept.append(line)
    date = b"Date: " + format_datetime(at).encode("ascii")
    added = [date]
    if not any(_MESSAGE_ID.match(line) for line in kept):
        added.append(f"Message-ID: <{secrets.token_hex(12)}@{domain}>".encode("ascii"))
    return b"\r\n".join(added + kept) + b"\r\n\r\n" + body


class Sender:
    """One SMTP relay and the envelope sender; `session()` gives a connection for one round."""

    def __init__(self, smtp: Smtp, envelope_from: str) -> None:
        self.smtp = smtp
        self.envelope_from = envelope_from
        self.owner = owner_id()

    @property
    def where(self) -> str:
        """What logs name as the relay."""
        return f"{self.smtp.host}:{self.smtp.port}"

    @property
    def lease(self) -> timedelta:
        """How long a claimed row is this drainer's: every step of a send is bounded by the
        timeout, and connecting, TLS, login and one message take fewer than ten steps."""
        return timedelta(seconds=LEASE_TIMEOUTS * self.smtp.timeout)

    @property
    def domain(self) -> str:
        return self.envelope_from.rpartition("@")[2] or "localhost"

    def session(self) -> Session:
        return Session(self)


class Session:
    """A connection opened on the first send and reused for the round's other rows."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender
        self.client: aiosmtplib.SMTP | None = None
        self.reached = False  # connected and logged in at least once

    async def send(self, to: str, raw: bytes) -> None:
        """Send one message; RelayError or RowError say whose fault a failure is.

        A connection that drops is opened again once for the same message (the relay may
        have closed an idle one); a message that loses the connection twice fails for now.
        """
        for attempt in (1, 2):
            if self.client is None:
                await self._open()
            assert self.client is not None
            try:
                await self._transaction(self.client, to, raw)
                return
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
                await self.close()
                if attempt == 2:
                    raise RowError(False, f"connection lost while sending: {_said(exc)}") from None

    async def _transaction(self, client: aiosmtplib.SMTP, to: str, raw: bytes) -> None:
        sender = self.sender.envelope_from
        options: list[str] = []
        if needs_utf8(sender, to, raw):
            if not client.supports_extension("smtputf8"):
                raise RowError(
                    True,
                    f"the relay does not offer SMTPUTF8, which the non-ASCII address {to!r}"
                    " needs; fix: use a relay that offers it (Postfix: smtputf8_enable = yes),"
                    " or correct the address, then `triage outbox retry`",
                )
            options = ["SMTPUTF8", "BODY=8BITMIME"]
        try:
            await client.sendmail(sender, [to], raw, mail_options=options)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            text = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            if any(r.code == 421 or _NO_RELAY.search(r.message) for r in exc.recipients):
                await self.close()
                raise RelayError("refused", text) from None
            raise RowError(all(500 <= r.code < 600 for r in exc.recipients), text) from None
        except aiosmtplib.SMTPSenderRefused as exc:
            if exc.code == 552 or "5.3.4" in exc.message:  # too large for this relay: the row's
                raise RowError(True, _said(exc)) from None
            await self.close()
            raise RelayError("refused", f"envelope sender {sender} refused: {_said(exc)}") from None
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:  # the relay is closing the connection: its problem, not the row's
                await self.close()
                raise RelayError("refused", _said(exc)) from None
            raise RowError(500 <= exc.code < 600, _said(exc)) from None
        except (ValueError, UnicodeError) as exc:  # an address SMTP cannot carry
            raise RowError(True, f"cannot be sent to {to!r}: {exc}") from None
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            raise  # the connection: send() opens it again
        except aiosmtplib.SMTPException as exc:
            raise RowError(False, _said(exc)) from None

    async def _open(self) -> None:
        cfg = self.sender.smtp
        password = None
        if cfg.username and cfg.secret is not None:
            try:
                password = await asyncio.to_thread(cfg.secret.reveal)
            except SecretError as exc:
                raise RelayError("secret", f"cannot read the SMTP password: {exc}") from None
        try:
            context = tls_context(cfg.ca_file) if cfg.tls != "none" else None
        except (OSError, ssl.SSLError) as exc:
            raise RelayError("tls", f"cannot load ca_file {cfg.ca_file}: {exc}") from None
        client = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            use_tls=cfg.tls == "tls",
            start_tls=cfg.tls == "starttls",
            tls_context=context,
            timeout=cfg.timeout,
            validate_certs=cfg.tls != "none",
        )
        try:
            await client.connect()
            if client.is_ehlo_or_helo_needed:  # the extensions are needed before the first send
                await client.ehlo()
            if cfg.username and password is not None:
                await client.login(cfg.username, password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            client.close()
            raise RelayError("auth", f"login as {cfg.username} refused: {_said(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - whatever it was, it is the relay's
            client.close()
            raise _relay_error(exc, cfg) from None
        self.client = client
        self.reached = True

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        with contextlib.suppress(Exception):
            if client.is_connected:
                await asyncio.wait_for(client.quit(), 5)
        client.close()


def _relay_error(exc: BaseException, cfg: Smtp) -> RelayError:
    untrusted = _untrusted(exc)
    if untrusted is not None:
        return RelayError("tls", f"certificate not trusted: {untrusted.verify_message}")
    if isinstance(exc, ssl.SSLError) or (
        isinstance(exc, aiosmtplib.SMTPException) and "tls" in str(exc).lower()
    ):  # a handshake that failed, or a relay that offers no STARTTLS
        return RelayError("tls", _said(exc))
    if isinstance(exc, aiosmtplib.SMTPException) and "auth" in str(exc).lower():
        return RelayError("auth", f"login as {cfg.username}: {_said(exc)}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return RelayError("refused", _said(exc))
    if isinstance(exc, aiosmtplib.SMTPConnectError | OSError):
        return RelayError("connect", f"cannot connect to {cfg.host}:{cfg.port}: {exc}")
    return RelayError("connect", f"{cfg.host}:{cfg.port}: {_said(exc)}")
