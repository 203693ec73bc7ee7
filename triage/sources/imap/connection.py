"""The connection to one IMAP account: TCP, TLS or STARTTLS, LOGIN or XOAUTH2, timeouts.

Every command goes through `_timed`: aioimaplib's own timeout can miss, and a
command left unanswered marks the connection broken, so closing it does not
wait for a LOGOUT nobody will answer. The untagged EXISTS and EXPUNGE lines are
watched whatever command brings them (`triage.sources.imap.waiting` reads them).
aioimaplib's protocol handlers are reached into here (pinned in pyproject.toml).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import os
import re
import ssl
from datetime import datetime

import aioimaplib

from triage.config.endpoints import Mailbox, SecretError
from triage.errors import RecordedError
from triage.sources.imap.namespace import Namespace
from triage.sources.token_expiry import jwt_expiry

CLOSE_WAIT = 1.0  # seconds for a closed connection's socket to go before it is aborted
_UNTAGGED = re.compile(rb"^\* (\d+) (EXISTS|EXPUNGE)\b", re.IGNORECASE)


class ImapError(RecordedError):
    """A failure talking to the server; `kind` says what the operator should look at."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # auth | tls | connect | protocol | secret | config


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Certificates verified, host names checked: the system store or the CA file named.

    One context per CA file (and version of it on disk), shared by every connection that
    names it: each holds its certificate store, and the system's is a few hundred kilobytes
    that a hundred mailboxes loaded a hundred times, again at every reconnection.
    """
    try:
        stamp = os.stat(ca_file).st_mtime_ns if ca_file else 0
    except OSError:
        stamp = -1  # create_default_context says what is wrong with it
    return _tls_context(ca_file, stamp)


@functools.lru_cache(maxsize=32)
def _tls_context(ca_file: str | None, _stamp: int) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def quote(name: str) -> str:
    """`name` as an IMAP quoted string."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Connection:
    """A logged-in connection; the state every part of a session shares."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.client: aioimaplib.IMAP4 | None = None
        self.lost = asyncio.Event()
        self.broken = False  # a command went unanswered: the connection's state is unknown
        self.namespace = Namespace()
        self.capabilities: set[str] = set()
        self.exists = 0  # messages in the selected folder, as the server last said
        self.selected_uidvalidity: int | None = None
        self.arrived = False  # the server announced new mail since the last search began
        self.token_expires: datetime | None = (
            None  # XOAUTH2: when the token taken at login expires, if it says
        )

    async def connect(self) -> None:
        """Connect, start TLS as configured, log in, and learn the server's capabilities."""
        mb = self.mailbox
        context = tls_context(mb.ca_file) if mb.tls != "none" else None
        self.client = aioimaplib.IMAP4(
            host=mb.host,
            port=mb.port,
            timeout=mb.timeout,
            conn_lost_cb=lambda _exc: self.lost.set(),
            ssl_context=context if mb.tls == "tls" else None,
        )
        self._watch_untagged(self.client.protocol)
        try:
            await self.client.wait_hello_from_server()
        except ssl.SSLCertVerificationError as exc:
            raise ImapError(
                "tls", f"{mb.host}:{mb.port}: certificate not trusted ({exc.verify_message})"
            ) from None
        except ssl.SSLError as exc:
            raise ImapError(
                "tls", f"{mb.host}:{mb.port}: TLS failed ({exc.reason or exc})"
            ) from None
        except (TimeoutError, OSError) as exc:
            raise ImapError(
                "connect", f"{mb.host}:{mb.port}: {exc.__class__.__name__}: {exc}"
            ) from None
        if mb.tls == "starttls":
            await self._starttls(context)
        await self._login()
        self.capabilities = set(self.client.protocol.capabilities)

    def _watch_untagged(self, protocol) -> None:
        """See every untagged EXISTS and EXPUNGE, whichever command's answer brings it.

        aioimaplib hands an EXISTS only to a running IDLE; one that comes with the answer to
        SEARCH or FETCH is dropped and one with MOVE's answer is buried in it. Mail that
        arrives while a batch is handled is announced that way, and IDLE never hears of it
        again: without this it waited for the next arrival, or for the IDLE renewal.
        """
        untagged = getattr(protocol, "_untagged_response", None)
        if untagged is None:  # another aioimaplib: wait() then falls back to IDLE alone
            return

        def noticing(line: bytes, untagged=untagged):
            found = _UNTAGGED.match(line)
            if found:
                if found.group(2).upper() == b"EXISTS":
                    count = int(found.group(1))
                    self.arrived = self.arrived or count > self.exists
                    self.exists = count
                else:
                    self.exists = max(0, self.exists - 1)
            return untagged(line)

        protocol._untagged_response = noticing

    async def _starttls(self, context: ssl.SSLContext | None) -> None:
        assert self.client is not None and context is not None
        protocol = self.client.protocol
        if "STARTTLS" not in protocol.capabilities:
            raise ImapError("tls", f"{self.mailbox.host}: the server does not offer STARTTLS")
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        response = await self._timed(protocol.execute(command))
        if response.result != "OK":
            raise ImapError(
                "tls", f"{self.mailbox.host}: STARTTLS refused: {response_text(response)}"
            )
        loop = asyncio.get_running_loop()
        try:
            transport = await asyncio.wait_for(
                loop.start_tls(
                    protocol.transport, protocol, context, server_hostname=self.mailbox.host
                ),
                self.mailbox.timeout,
            )
        except ssl.SSLCertVerificationError as exc:
            raise ImapError(
                "tls", f"{self.mailbox.host}: certificate not trusted ({exc.verify_message})"
            ) from None
        except (TimeoutError, ssl.SSLError, OSError) as exc:
            raise ImapError(
                "tls", f"{self.mailbox.host}: STARTTLS handshake failed ({exc})"
            ) from None
        protocol.transport = transport
        await self._timed(protocol.capability())

    async def _login(self) -> None:
        assert self.client is not None
        mb = self.mailbox
        try:
            secret = await asyncio.to_thread(mb.secret.reveal)
        except SecretError as exc:
            raise ImapError(
                "secret", f"{mb.name}: cannot read the {'token' if mb.oauth else 'password'}: {exc}"
            ) from None
        oauth_status = ""
        try:
            if mb.oauth:
                response, oauth_status = await self._xoauth2(mb.username, secret)
            else:
                response = await self.client.login(mb.username, secret)
        except TimeoutError:
            raise ImapError(
                "connect", f"{mb.host}: no answer to LOGIN within {mb.timeout:g} s"
            ) from None
        except aioimaplib.Abort as exc:
            raise ImapError("auth", f"{mb.host}: login refused: {exc}") from None
        if response.result != "OK":
            what = "token" if mb.oauth else "password"
            said = response_text(response) + (
                f"; token status {oauth_status}" if oauth_status else ""
            )
            raise ImapError(
                "auth",
                f"{mb.name}: login as {mb.username} refused ({said}); the {what} may have "
                f"expired or been changed ({mb.secret})",
            )
        if mb.oauth:
            self.token_expires = jwt_expiry(secret)
        # The capabilities after login: xoauth2() never takes the list a server sends with its
        # OK, and login() only when the server sends one (Dovecot does; Gmail does not). With
        # the pre-login list alone (no MOVE, no UIDPLUS) ack() fell back to COPY, STORE
        # \Deleted and a plain EXPUNGE.
        await self._timed(self.client.protocol.capability())

    async def _xoauth2(self, username: str, token: str) -> tuple[aioimaplib.Response, str]:
        """AUTHENTICATE XOAUTH2, answering the challenge a server sends when it refuses the token.

        A refused token is not answered NO at once: the server first sends a continuation holding
        a base64 JSON error ({"status": "401", ...}) and waits for the client's empty response
        (Google's and Microsoft's XOAUTH2; RFC 7628 for OAUTHBEARER). aioimaplib's xoauth2() never
        sends it, so the login hung until the timeout and was reported as a connection problem.
        Returns the response and the error's status ("" when there was none)."""
        assert self.client is not None
        protocol = self.client.protocol
        original = getattr(protocol, "_continuation", None)
        errors: list[bytes] = []
        if original is not None:

            def answer(line: bytes) -> None:
                pending = protocol.pending_sync_command
                if pending is None or pending.name != "AUTHENTICATE":
                    return original(line)
                errors.append(line[1:].strip())
                protocol.transport.write(b"\r\n")  # the empty response: the server ends with NO
                return None

            protocol._continuation = answer
        try:
            response = await self.client.xoauth2(username, token)
        finally:
            if original is not None:
                del protocol._continuation  # the class's own method again
        return response, _oauth_status(errors)

    async def close(self) -> None:
        """LOGOUT, best effort and bounded; none on a connection the server has closed."""
        if self.client is None:
            return
        try:
            if self.lost.is_set() or self.broken:
                return  # nobody would answer: LOGOUT waited its whole time limit
            if self.client.has_pending_idle():
                self.client.idle_done()
            await asyncio.wait_for(self.client.logout(), min(5.0, self.mailbox.timeout))
        except Exception:  # noqa: BLE001 - closing a connection that may already be gone
            pass
        finally:
            transport = getattr(self.client.protocol, "transport", None)
            self.client = None
            if transport is not None:
                await self._closed(transport)

    async def _closed(self, transport: asyncio.BaseTransport) -> None:
        """Close `transport` and wait until the socket is gone (aborted after CLOSE_WAIT):
        a connection counted free by the daemon's bound must be closed on the server too."""
        transport.close()
        try:
            await asyncio.wait_for(self.lost.wait(), CLOSE_WAIT)
        except TimeoutError:
            transport.abort()  # a TLS close the peer never answered

    async def noop(self) -> None:
        assert self.client is not None
        await self._ok(self.client.noop(), "NOOP")

    def _check_lost(self) -> None:
        if self.lost.is_set():
            raise ImapError("connect", f"{self.mailbox.host}: connection lost")

    async def _timed(self, awaitable):
        try:
            return await asyncio.wait_for(awaitable, self.mailbox.timeout)
        except TimeoutError:
            self.broken = True
            raise ImapError(
                "connect", f"{self.mailbox.host}: no answer within {self.mailbox.timeout:g} s"
            ) from None
        except aioimaplib.Abort as exc:
            self.broken = True
            raise ImapError("protocol", f"{self.mailbox.host}: {exc}") from None

    async def _ok(self, awaitable, what: str) -> None:
        response = await self._timed(awaitable)
        if response.result != "OK":
            raise ImapError("protocol", f"{what} failed: {response_text(response)}")


def _oauth_status(challenges: list[bytes]) -> str:
    """The "status" of the JSON error a server sent as an XOAUTH2 challenge, sanitised ("" if none)."""
    for challenge in challenges:
        try:
            error = json.loads(base64.b64decode(challenge, validate=True))
        except (binascii.Error, ValueError):
            continue
        if isinstance(error, dict) and error.get("status") is not None:
            return re.sub(r"[^A-Za-z0-9_.:-]", "", str(error["status"]))[:40]
    return ""


def response_text(response) -> str:
    """What the server said, for an error message: the answer's last 200 characters."""
    lines = [
        bytes(x).decode("utf-8", "replace")
        for x in response.lines
        if isinstance(x, bytes | bytearray)
    ]
    return " ".join(lines)[-200:] or response.result
