"""An OAuth 2.0 token introspection endpoint (RFC 7662) for a private Dovecot's XOAUTH2 and
OAUTHBEARER, and the clients' initial responses for those mechanisms."""

from __future__ import annotations

import base64
import http.server
import json
import secrets
import threading
import time
import urllib.parse

from tests.support.net import HOST


class Introspection:
    """An OAuth 2.0 token introspection endpoint (RFC 7662) on 127.0.0.1, served from a thread.

    POST `url` with the form field `token=...` (Dovecot's `introspection_mode = post`); the answer
    is `{"active": true, "username": ..., "exp": ...}` for a token issued here that is neither
    revoked nor expired, else `{"active": false}`. Tokens are random and never written to any
    log: the HTTP server's request log is silenced, and repr() shows only counts."""

    path = "/introspect"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, dict] = {}  # token -> {"user", "exp", "revoked"}
        self.requests = 0  # introspection requests answered
        self.refused = 0  # ... of which answered inactive
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def start(cls) -> Introspection:
        tokens = cls()
        owner = tokens

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode("ascii", "replace"))
                if urllib.parse.urlsplit(self.path).path != owner.path:
                    self._answer(404, {"error": "not_found"})
                    return
                self._answer(200, owner._introspect((form.get("token") or [""])[0]))

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # a GET-mode URL would carry the token: log nothing

        server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        server.daemon_threads = True
        tokens._server = server
        tokens._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        tokens._thread.start()
        return tokens

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{self.path}"

    def issue(
        self, user: str, *, lifetime: float = 3600.0, token: str | None = None, jwt: bool = False
    ) -> str:
        """A new access token for user, valid for `lifetime` seconds.

        jwt: shaped as a JWT whose `exp` claim says when it expires, as Microsoft's access
        tokens are (signed with a random key: only the resource server would check it)."""
        exp = time.time() + lifetime
        if token is None:
            token = _jwt(user, int(exp)) if jwt else "at-" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = {"user": user, "exp": exp, "revoked": False}
        return token

    def revoke(self, token: str) -> None:
        with self._lock:
            self._tokens[token]["revoked"] = True

    def expire(self, token: str) -> None:
        """Make the token's lifetime end now (introspection then answers inactive)."""
        with self._lock:
            self._tokens[token]["exp"] = time.time() - 1

    def _introspect(self, token: str) -> dict:
        with self._lock:
            self.requests += 1
            known = self._tokens.get(token)
            if known is None or known["revoked"] or known["exp"] <= time.time():
                self.refused += 1
                return {"active": False}
            return {
                "active": True,
                "username": known["user"],
                "token_type": "Bearer",
                "exp": int(known["exp"]),
            }

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> Introspection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"{HOST}:{self.port}" if self._server else "stopped"
        return f"<Introspection {where} tokens={len(self._tokens)} requests={self.requests}>"


def _jwt(user: str, exp: int) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    signature = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'sub': user, 'exp': exp})}.{signature}"


def xoauth2_payload(user: str, token: str) -> bytes:
    """The XOAUTH2 initial client response (before base64), as Google and Microsoft define it."""
    return f"user={user}\1auth=Bearer {token}\1\1".encode()


def oauthbearer_payload(user: str, token: str) -> bytes:
    """The OAUTHBEARER initial client response (RFC 7628, before base64)."""
    return f"n,a={user},\1auth=Bearer {token}\1\1".encode()
