"""App-only tokens for Microsoft Graph: the client-credentials grant through msal.

msal's ConfidentialClientApplication keeps the token in its cache and asks for a new one
when the cached one has under five minutes left (or when Microsoft's `refresh_in` says so),
so a long-running daemon never sends an expired token it could have renewed. A grant
Microsoft refuses (a wrong or expired secret, a certificate it does not know, an app not in
the tenant) is raised at once as an "auth" failure carrying Microsoft's own reason: the
AADSTS code and its text, which is what an administrator searches for.
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from triage.config.endpoints import Secret, SecretError
from triage.errors import RecordedError

if TYPE_CHECKING:  # msal, requests and cryptography are imported when a Graph mailbox is used:
    import msal  # a daemon watching IMAP only does not pay ~40 ms and their memory at start

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
RENEW_WINDOW = 5 * 60 + 5  # msal renews a token with under 5 minutes left; a margin over it
_AADSTS = re.compile(r"AADSTS\d+: [^\r\n]*")


class GraphError(RecordedError):
    """A failure talking to Microsoft; `kind` says what the operator should look at.

    auth: the grant or the token was refused; connect: no answer, or a connection that
    dropped; protocol: Graph answered something unusable; config: a folder, a mailbox or a
    permission that the configuration names wrongly; secret: the secret cannot be read;
    throttled: Graph kept answering 429/503 past the retry budget; sent_maybe: the connection
    was lost after a request that must not be repeated blindly (sendMail) went out.
    """

    def __init__(self, kind: str, message: str, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.code = code  # Graph's error code (ErrorItemNotFound ...) or the AADSTS code


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who the app is: tenant, client id, and a client secret or a certificate.

    `secret` holds the client secret or, with `certificate_file`, the certificate's private
    key (PEM); both come through the same file/env/credential sources as passwords.
    """

    tenant_id: str
    client_id: str
    secret: Secret
    certificate_file: str | None = None  # the public certificate (PEM) registered with the app
    authority_host: str = "https://login.microsoftonline.com"
    scope: str = GRAPH_SCOPE
    ca_file: str | None = None  # a private CA (a TLS-inspecting proxy, or the test stand-in)
    timeout: float = 30.0

    @property
    def authority(self) -> str:
        return f"{self.authority_host.rstrip('/')}/{self.tenant_id}"


def thumbprint(certificate_pem: bytes) -> tuple[str, str]:
    """(SHA-1 hex, the PEM of the first certificate): what msal needs beside the private key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(certificate_pem)
    return cert.fingerprint(hashes.SHA1()).hex(), certificate_pem.decode("ascii")  # noqa: S324 - x5t is SHA-1 by definition


class TokenSource:
    """Tokens for one app registration; one msal application, built on first use."""

    def __init__(
        self,
        credentials: Credentials,
        on_token: Callable[[datetime | None], None] | None = None,
    ) -> None:
        self.credentials = credentials
        self.on_token = on_token  # told each token's expiry as it is taken from msal (metrics)
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()  # msal's cache is used from worker threads
        self._fresh: tuple[str, float] | None = None  # (token, until when msal would reuse it)

    async def token(self) -> str:
        """A valid access token: the cached one, or a new one; GraphError("auth") if refused.

        msal is asked (in a thread: it may block on the network) only once the token is
        within msal's own renewal window; until then the token it gave is reused as is,
        which saves a thread hop and a cache search on every request."""
        if self._fresh is not None and time.monotonic() < self._fresh[1]:
            return self._fresh[0]
        return await asyncio.to_thread(self._token)

    def forget(self) -> None:
        """Drop the cached token: Graph refused it (revoked, or expired early)."""
        with self._lock:
            self._fresh = None
            if self._app is not None:
                self._app.remove_tokens_for_client()

    def _token(self) -> str:
        import requests

        with self._lock:
            app = self._application()
            try:
                result = app.acquire_token_for_client(scopes=[self.credentials.scope])
            except requests.RequestException as exc:
                raise GraphError(
                    "connect", f"{self.credentials.authority}: {type(exc).__name__}: {exc}"
                ) from None
        if "access_token" in result:
            # msal renews once under RENEW_WINDOW is left (or at its refresh_on): ask it again then
            left = float(result.get("expires_in") or 0) - RENEW_WINDOW
            if result.get("refresh_on"):
                left = min(left, float(result["refresh_on"]) - time.time())
            self._fresh = (result["access_token"], time.monotonic() + left)
            if self.on_token is not None:
                expires_in = result.get("expires_in")
                self.on_token(
                    datetime.now(UTC) + timedelta(seconds=float(expires_in))
                    if expires_in is not None
                    else None
                )
            return result["access_token"]
        raise GraphError(
            "auth",
            # the reason first: `triage status` shows the first 60 characters of an error
            f"{_reason(result)} (Microsoft refused the token for app "
            f"{self.credentials.client_id} in tenant {self.credentials.tenant_id})",
            code=str((result.get("error_codes") or [""])[0]),
        )

    def _application(self) -> msal.ConfidentialClientApplication:
        if self._app is not None:
            return self._app
        import msal
        import requests

        c = self.credentials
        try:
            secret = c.secret.reveal()
        except SecretError as exc:
            what = "certificate key" if c.certificate_file else "client secret"
            raise GraphError("secret", f"cannot read the {what}: {exc}") from None
        credential: str | dict
        if c.certificate_file:
            try:
                sha1, public = thumbprint(Path(c.certificate_file).read_bytes())
            except (OSError, ValueError) as exc:
                raise GraphError(
                    "config", f"certificate_file {c.certificate_file}: cannot read it: {exc}"
                ) from None
            credential = {"private_key": secret, "thumbprint": sha1, "public_certificate": public}
        else:
            credential = secret
        # Our own session: msal's would let REQUESTS_CA_BUNDLE in the environment override
        # the configured ca_file (requests prefers it to a session's own setting).
        session = requests.Session()
        session.request = functools.partial(  # type: ignore[method-assign]
            session.request, verify=c.ca_file or True, timeout=c.timeout
        )
        try:
            self._app = msal.ConfidentialClientApplication(
                c.client_id,
                client_credential=credential,
                authority=c.authority,
                instance_discovery=False,  # the authority is named in the config: no lookup
                http_client=session,
            )
        except requests.RequestException as exc:
            raise GraphError("connect", f"{c.authority}: {type(exc).__name__}: {exc}") from None
        except ValueError as exc:  # tenant discovery refused: an unknown tenant, mostly
            raise GraphError(
                "auth", f"Microsoft did not accept tenant {c.tenant_id}: {_chain_reason(exc)}"
            ) from None
        return self._app


def _reason(result: dict) -> str:
    """Microsoft's reason, without the trace lines: 'AADSTS7000215: Invalid client secret ...'."""
    text = str(result.get("error_description") or result.get("error") or "no reason given")
    found = _AADSTS.search(text)
    return (found.group(0) if found else text.splitlines()[0]).strip()[:500]


def _chain_reason(exc: BaseException) -> str:
    """The AADSTS text anywhere in an exception and its causes; else the first message."""
    seen: BaseException | None = exc
    while seen is not None:
        found = _AADSTS.search(str(seen).replace("\\r\\n", "\n"))
        if found:
            return found.group(0)[:500]
        seen = seen.__cause__ or seen.__context__
    return str(exc).splitlines()[0][:500]
