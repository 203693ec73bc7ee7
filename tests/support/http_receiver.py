"""A real HTTP/1.1 receiver on 127.0.0.1 for the sinks' tests and benches.

    from tests.support.http_receiver import HttpReceiver, Reply

    with HttpReceiver.start(secret="whsec_...") as rx:       # a thread; stops cleanly on exit
        rx.then(Reply.status(429, retry_after="7"))          # the next request gets this
        ... deliver to rx.url ...
        rx.requests[0].body, rx.requests[0].verified

    rx = HttpReceiver.spawn(tmpdir, secret="whsec_...")     # a child process, stopped by pid
    rx.stats()                                               # {"received": n, "verified": n, ...}

Every request is recorded (method, path, query, headers, exact body bytes, arrival time).
With a secret, each request's Standard Webhooks signature is checked by the specification's
reference verifier (the `standardwebhooks` package, not triage's own code): `verified` is
True or False and `verify_error` says why; an unverified request is answered 401 unless a
reply was queued for it.

Replies, queued with `then(...)` (one per request, in order) or set for every request with
`always(...)`: `Reply.status(code, body, retry_after=...)`, `Reply.hang()` (hold the request
until the receiver stops or `release()`), `Reply.close()` (read the request, close the
connection without answering). Other servers (tests/support/connectwise_standin.py) reuse
`Server` with their own handler.

A stop shuts the listening socket and every open connection, releases hung requests and
joins every thread: nothing is left running.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lowercased
    body: bytes
    at: float  # time.time() when it arrived
    verified: bool | None = None  # None: no secret to check against
    verify_error: str = ""

    def json(self) -> object:
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Reply:
    kind: str  # status | hang | close
    code: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def status(
        cls,
        code: int,
        body: bytes | str = b"",
        retry_after: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        more = dict(headers or {})
        if retry_after is not None:
            more["Retry-After"] = retry_after
        raw = body.encode() if isinstance(body, str) else body
        return cls("status", code, raw, tuple(more.items()))

    @classmethod
    def json(cls, code: int, value: object) -> Reply:
        return cls.status(code, json.dumps(value), headers={"Content-Type": "application/json"})

    @classmethod
    def hang(cls) -> Reply:
        return cls("hang")

    @classmethod
    def close(cls) -> Reply:
        return cls("close")


OK = Reply.status(200, b"ok")


class Server(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its connections, so a stop ends every one of them."""

    daemon_threads = False  # joined at stop
    block_on_close = True

    def __init__(
        self,
        handle: Callable[[Request], Reply],
        secret: str | None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.handle = handle
        self.verifier = None
        if secret:
            from standardwebhooks import Webhook

            self.verifier = Webhook(secret)
        self.release_event = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self.errors: list[str] = []  # what failed in a connection (a refused TLS handshake ...)
        super().__init__((HOST, 0), _Handler)
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            # the handshake runs in the connection's thread (setup), not in the accept loop
            self.socket = context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def handle_error(self, request, client_address) -> None:  # type: ignore[override]
        self.errors.append(repr(sys.exc_info()[1]))

    def process_request(self, request, client_address) -> None:  # type: ignore[override]
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:  # type: ignore[override]
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def stop(self) -> None:
        self.release_event.set()
        self.shutdown()  # serve_forever returns
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:  # idle keep-alive connections wake up and end
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.server_close()  # joins the connection threads

    def check(self, headers: dict[str, str], body: bytes) -> tuple[bool | None, str]:
        if self.verifier is None:
            return None, ""
        try:
            self.verifier.verify(body, headers, json_parse=False)
        except Exception as exc:  # noqa: BLE001 - any failure is "not verified", recorded
            return False, f"{type(exc).__name__}: {exc}"
        return True, ""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real receivers offer
    server: Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        # The head and the body go out in two writes; without this, Nagle's algorithm holds
        # the second until the client's delayed ACK (~40 ms per answer).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urllib.parse.urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified, error = self.server.check(headers, body)
        request = Request(
            self.command,
            parts.path,
            urllib.parse.parse_qs(parts.query, keep_blank_values=True),
            headers,
            body,
            time.time(),
            verified,
            error,
        )
        reply = self.server.handle(request)
        if reply.kind == "hang":
            self.server.release_event.wait(60)
            self.close_connection = True
            return
        if reply.kind == "close":
            self.close_connection = True
            return
        self.send_response(reply.code)
        names = {k.lower() for k, _ in reply.headers}
        for key, value in reply.headers:
            self.send_header(key, value)
        if "content-type" not in names:
            self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any


class HttpReceiver:
    """Records requests, verifies signatures, answers as told. See the module's docstring."""

    def __init__(
        self, secret: str | None = None, path: str = "/hook", tls: tuple[Path, Path] | None = None
    ) -> None:
        self.requests: list[Request] = []
        self._queue: list[Reply] = []
        self._default = OK
        self._lock = threading.Lock()
        self.server = Server(self._handle, secret, tls)
        self.port = self.server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://{HOST}:{self.port}{path}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @classmethod
    def start(
        cls, secret: str | None = None, path: str = "/hook", tls: tuple[Path, Path] | None = None
    ) -> HttpReceiver:
        """`tls`: (certificate, key) files to serve HTTPS with (tests.servers.make_cert)."""
        rx = cls(secret, path, tls)
        rx._thread.start()
        return rx

    def _handle(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self._queue:
                return self._queue.pop(0)
        if request.verified is False:
            return Reply.status(401, request.verify_error)
        return self._default

    def then(self, *replies: Reply) -> HttpReceiver:
        with self._lock:
            self._queue.extend(replies)
        return self

    def always(self, reply: Reply) -> HttpReceiver:
        self._default = reply
        return self

    def release(self) -> None:
        """Let hung requests go (they end without an answer)."""
        self.server.release_event.set()

    def stop(self) -> None:
        self.server.stop()
        self._thread.join(timeout=10)

    def __enter__(self) -> HttpReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- a child process, for benches (the sender's measure is not shared with the receiver's)

    @staticmethod
    def spawn(tmpdir: str | os.PathLike[str], secret: str | None = None) -> Spawned:
        folder = Path(tempfile.mkdtemp(prefix="http-receiver-", dir=tmpdir))
        args = [sys.executable, str(Path(__file__).resolve()), str(folder)]
        if secret:
            (folder / "secret").write_text(secret)
        log = (folder / "receiver.log").open("ab")
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, close_fds=True
        )
        log.close()
        ready = folder / "port"
        deadline = time.monotonic() + 15
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop(proc)
                raise RuntimeError(
                    f"receiver did not start: {(folder / 'receiver.log').read_text()}"
                )
            time.sleep(0.01)
        return Spawned(proc, int(ready.read_text()))


@dataclass
class Spawned:
    """A receiver in a child process: every request answered 200; `stats()` counts them."""

    proc: subprocess.Popen
    port: int
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = f"http://{HOST}:{self.port}/hook"

    def stats(self) -> dict:
        with urllib.request.urlopen(f"http://{HOST}:{self.port}/_stats", timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        _stop(self.proc)

    def __enter__(self) -> Spawned:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stop(proc: subprocess.Popen) -> None:
    """This pid only: SIGTERM, then SIGKILL after a bound."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _main(folder: Path) -> None:
    secret_file = folder / "secret"
    secret = secret_file.read_text().strip() if secret_file.exists() else None
    counts = {"received": 0, "verified": 0, "ids": set()}
    lock = threading.Lock()

    def handle(request: Request) -> Reply:
        if request.path == "/_stats":
            with lock:
                out = {k: (len(v) if isinstance(v, set) else v) for k, v in counts.items()}
            return Reply.json(200, out)
        with lock:
            counts["received"] += 1
            counts["verified"] += bool(request.verified)
            counts["ids"].add(request.headers.get("webhook-id"))
        if request.verified is False:
            return Reply.status(401, request.verify_error)
        return OK

    server = Server(handle, secret)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    (folder / "port.tmp").write_text(str(server.server_address[1]))
    (folder / "port.tmp").rename(folder / "port")
    stop.wait()
    server.stop()
    thread.join(timeout=10)


if __name__ == "__main__":
    _main(Path(sys.argv[1]))
