"""The stand-in's Microsoft identity platform: tenant discovery and the client-credentials grant.

Answers as Microsoft's documentation shows (v2.0 endpoints): errors are
`{"error": ..., "error_description": "AADSTSnnnn: ...\\r\\nTrace ID: ...", "error_codes": [n], ...}`;
a token is `{"token_type": "Bearer", "expires_in": ..., "access_token": ...}`. The codes used:
AADSTS90002 (tenant not found), AADSTS700016 (application not found in the directory),
AADSTS7000215 (invalid client secret), AADSTS7000222 (client secret expired), AADSTS700027
(client assertion signature invalid), AADSTS7000112 (application disabled), AADSTS1002012
(a client-credentials scope must end in /.default).
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes


@dataclass
class App:
    """An app registration with its credentials and what it may do (roles, mailboxes)."""

    client_id: str
    secret: str | None = None
    secret_expired: bool = False
    certificate: x509.Certificate | None = None
    roles: set[str] = field(default_factory=lambda: {"Mail.ReadWrite", "Mail.Send"})
    mailboxes: set[str] | None = None  # None: every mailbox (no RBAC scope)
    disabled: bool = False


@dataclass
class Issued:
    client_id: str
    expires: float


class Identity:
    def __init__(self, tenant: str, base: str) -> None:
        self.tenant = tenant
        self.base = base  # https://127.0.0.1:PORT
        self.apps: dict[str, App] = {}
        self.tokens: dict[str, Issued] = {}
        self.lifetime = 3599  # seconds, as Microsoft's tokens for Graph usually have
        self.issued = 0

    @property
    def token_endpoint(self) -> str:
        return f"{self.base}/{self.tenant}/oauth2/v2.0/token"

    def openid_configuration(self, tenant: str) -> tuple[int, dict]:
        if tenant != self.tenant:
            return 400, _error(
                "invalid_tenant",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant "
                "ID and are signing into the correct cloud.",
            )
        root = f"{self.base}/{tenant}"
        return 200, {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "issuer": f"{self.base}/{tenant}/v2.0",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "tenant_region_scope": "EU",
        }

    def grant(self, tenant: str, form: dict[str, str]) -> tuple[int, dict]:
        """The client-credentials grant: a token, or the error Microsoft would give."""
        if tenant != self.tenant:
            return 400, _error("invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return 400, _error(
                "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        client_id = form.get("client_id", "")
        app = self.apps.get(client_id)
        if app is None:
            return 400, _error(
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant}'. This can happen if the application has not been installed by the "
                "administrator of the tenant or consented to by any user in the tenant.",
            )
        scope = form.get("scope", "")
        if not all(s.endswith("/.default") for s in scope.split()) or not scope:
            return 400, _error(
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        if app.disabled:
            return 400, _error(
                "unauthorized_client",
                7000112,
                f"Application '{client_id}' is disabled.",
            )
        refused = self._check_credential(app, form)
        if refused is not None:
            return 401, refused
        token = secrets.token_urlsafe(48)
        self.tokens[token] = Issued(client_id, time.time() + self.lifetime)
        self.issued += 1
        return 200, {
            "token_type": "Bearer",
            "expires_in": self.lifetime,
            "ext_expires_in": self.lifetime,
            "access_token": token,
        }

    def _check_credential(self, app: App, form: dict[str, str]) -> dict | None:
        if "client_secret" in form:
            if app.secret is None or not secrets.compare_digest(form["client_secret"], app.secret):
                return _error(
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request "
                    "is the client secret value, not the client secret ID, for a secret added "
                    f"to app '{app.client_id}'.",
                )
            if app.secret_expired:
                return _error(
                    "invalid_client",
                    7000222,
                    f"The provided client secret keys for app '{app.client_id}' are expired. "
                    "Visit the Azure portal to create new keys for your app: "
                    "https://aka.ms/NewClientSecret, or consider using certificate credentials "
                    "for added security: https://aka.ms/certCreds.",
                )
            return None
        assertion = form.get("client_assertion")
        if assertion is None:
            return _error(
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' "
                "or 'client_secret'.",
            )
        if app.certificate is None:
            return _error(
                "invalid_client",
                700027,
                "Client assertion failed signature validation. No certificate is registered "
                f"for app '{app.client_id}'.",
            )
        try:
            header = jwt.get_unverified_header(assertion)
            jwt.decode(
                assertion,
                app.certificate.public_key(),
                algorithms=["RS256", "PS256"],
                audience=self.token_endpoint,
                issuer=app.client_id,
                options={"require": ["exp", "aud", "iss", "sub"]},
            )
        except jwt.PyJWTError as exc:
            return _error(
                "invalid_client",
                700027,
                f"Client assertion failed signature validation. ({type(exc).__name__})",
            )
        thumbprints = {
            "x5t": jwt.utils.base64url_encode(app.certificate.fingerprint(hashes.SHA1())),
            "x5t#S256": jwt.utils.base64url_encode(app.certificate.fingerprint(hashes.SHA256())),
        }
        named = [k for k in thumbprints if k in header]
        # msal writes x5t with base64 padding, PyJWT without; Entra accepts msal's
        if not named or any(header[k].rstrip("=").encode() != thumbprints[k] for k in named):
            return _error(
                "invalid_client",
                700027,
                "Client assertion contains an invalid signature. [Reason - The key was not "
                "found., Thumbprint of key used by client: "
                f"'{header.get('x5t') or header.get('x5t#S256')}']",
            )
        return None

    def check(self, token: str) -> tuple[str | None, str]:
        """(client id, "") for a valid bearer token; (None, Graph's message) otherwise."""
        if not token:
            return None, "Access token is empty."
        issued = self.tokens.get(token)
        if issued is None:
            return None, "IDX14100: JWT is not well formed, there are no dots (.)."
        if issued.expires <= time.time():
            return None, "Lifetime validation failed, the token is expired."
        return issued.client_id, ""

    def expire_all(self) -> None:
        for issued in self.tokens.values():
            issued.expires = 0.0


def _error(error: str, code: int, text: str) -> dict:
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return {
        "error": error,
        "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\n"
        f"Correlation ID: {correlation}\r\nTimestamp: {stamp}",
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": "https://login.microsoftonline.com/error?code=" + str(code),
    }
