"""Sending acknowledgements and operator mail through Microsoft Graph's sendMail.

For tenants with SMTP AUTH switched off. The outbox hands over the MIME it already rendered
(From the support address, our Message-ID, In-Reply-To/References, and the RFC 3834 marks
Auto-Submitted, X-Auto-Response-Suppress and Precedence); it is posted as MIME (base64,
Content-Type text/plain), as Microsoft documents for sendMail, so every header goes as
written. The JSON form would not do: its internetMessageHeaders take only names starting
with "x-", so Auto-Submitted and Precedence could not be sent.

Whose fault a failure is, as for SMTP (sinks/smtp.py): the token, the app's permission, the
mailbox, Send As, throttling past the retry budget, or Graph failing (5xx) is `RelayError`:
every row waits. A refused recipient, MIME Graph cannot read, or a message too large is the
row's `RowError`. A connection that drops after the request went out is not sent again at
once (Graph may have accepted it): the row waits, as SMTP's does.

Graph accepts a message (202) before Exchange delivers it: an address that does not exist
comes back later as a non-delivery report to the support mailbox, which the source reads
and files as a bounce, as with SMTP relays that accept first.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import email.utils
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

import httpx

from triage.sinks.smtp import RelayError, RowError
from triage.sources.graph_auth import Credentials, GraphError, TokenSource
from triage.sources.graph_http import GRAPH_URL, GraphClient, Retries
from triage.store.outbox import owner_id

LEASE_TIMEOUTS = 10
SEND_MAX_BYTES = 4 * 1024 * 1024  # MIME through sendMail (larger needs an upload session)
_ROW_CODES = {
    "ErrorInvalidRecipients",
    "ErrorMimeContentInvalidBase64String",
    "ErrorMimeContentConversionFailed",
    "ErrorMessageSizeExceeded",
    "ErrorInvalidRequest",
}


@dataclass(frozen=True, slots=True)
class GraphSending:
    """The support mailbox that sends, and the app that may send as it (Mail.Send)."""

    user: str  # the support mailbox's address (UPN): mail is sent as it
    credentials: Credentials
    graph_url: str = GRAPH_URL
    timeout: float = 30.0
    retries: Retries = Retries(attempts=4, budget=120.0)


class GraphSender:
    """The outbox's sender for Graph; the same face as sinks.smtp.Sender."""

    def __init__(
        self, sending: GraphSending, envelope_from: str, tokens: TokenSource | None = None
    ) -> None:
        self.sending = sending
        self.envelope_from = envelope_from
        self.tokens = tokens or TokenSource(sending.credentials)
        self.owner = owner_id()

    @property
    def where(self) -> str:
        """What logs name as the relay."""
        return f"graph:{self.sending.user}"

    @property
    def lease(self) -> timedelta:
        """How long a claimed row is this drainer's: a token, then one request with its
        retries, each bounded by the timeout."""
        return timedelta(
            seconds=LEASE_TIMEOUTS * self.sending.timeout + self.sending.retries.budget
        )

    @property
    def domain(self) -> str:
        return self.envelope_from.rpartition("@")[2] or "localhost"

    def session(self) -> GraphMailSession:
        return GraphMailSession(self)


class GraphMailSession:
    """One drain round: one HTTP client, opened on the first send."""

    def __init__(self, sender: GraphSender) -> None:
        self.sender = sender
        self.client: GraphClient | None = None
        self.reached = False  # a token was granted and Graph answered at least once

    async def send(self, to: str, raw: bytes) -> None:
        """Send one message as MIME; RelayError or RowError say whose fault a failure is."""
        s = self.sender.sending
        body = addressed(raw, to)
        if len(body) > SEND_MAX_BYTES:
            raise RowError(
                True,
                f"{len(body):,} bytes is over the {SEND_MAX_BYTES:,} bytes sendMail takes as MIME",
            )
        if self.client is None:
            self.client = GraphClient(
                self.sender.tokens,
                s.graph_url,
                ca_file=s.credentials.ca_file,
                timeout=s.timeout,
                retries=s.retries,
            )
        try:
            await self.client.request(
                "POST",
                f"users/{quote(s.user, safe='@')}/sendMail",
                content=base64.b64encode(body),
                headers={"Content-Type": "text/plain"},
                ok=(202,),
                idempotent=False,
            )
        except GraphError as exc:
            raise classify(exc, s.user) from None
        except httpx.HTTPError as exc:  # anything httpx raises that the client did not map
            raise RelayError("connect", f"{type(exc).__name__}: {exc}") from None
        self.reached = True

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.close()


def classify(exc: GraphError, user: str) -> RelayError | RowError:
    """A Graph failure as the relay's (every row waits) or the row's."""
    if exc.kind == "sent_maybe":
        return RowError(False, f"connection lost while sending: {exc}")
    if exc.kind in ("auth", "secret", "connect"):
        return RelayError(exc.kind, str(exc))
    if exc.code == "ErrorSendAsDenied":
        return RelayError(
            "refused",
            f"{exc}; fix: send From {user} (support_address), or grant the mailbox Send As",
        )
    if exc.status in (401, 403):
        return RelayError(
            "auth",
            f"{exc}; fix: give the app the Mail.Send application permission with admin "
            f"consent, and include {user} in its RBAC scope",
        )
    if exc.status == 404 or exc.kind in ("throttled", "config") or (exc.status or 0) >= 500:
        return RelayError("refused", str(exc))
    if exc.code in _ROW_CODES or exc.status in (400, 413):
        return RowError(True, str(exc))
    return RowError(False, str(exc))


def addressed(raw: bytes, to: str) -> bytes:
    """`raw` as Graph must get it: sendMail takes the recipients from the headers (there is
    no envelope), so `to` is added as Bcc when To and Cc do not name it. Pure."""
    head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    named = {
        a.lower()
        for _, a in email.utils.getaddresses(head.get_all("To", []) + head.get_all("Cc", []))
    }
    if to.lower() in named:
        return raw
    return b"Bcc: " + to.encode("utf-8") + b"\r\n" + raw
