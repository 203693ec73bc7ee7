"""Ports on 127.0.0.1 for private servers: a free one, and waiting until one answers."""

from __future__ import annotations

import socket
import time

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for_port(
    host: str, port: int, timeout: float = 10.0, *, greeting: bytes | None = None
) -> bytes:
    """Wait until host:port accepts a connection (and, with `greeting`, until the first line the
    server sends starts with it). Returns the line read (b"" without `greeting`).
    Raises TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{host}:{port} not ready after {timeout:.1f}s (last: {last!r})")
        try:
            with socket.create_connection((host, port), timeout=min(remaining, 2.0)) as s:
                if greeting is None:
                    return b""
                s.settimeout(min(max(deadline - time.monotonic(), 0.1), 5.0))
                line = read_line(s)
                if line.startswith(greeting):
                    return line
                last = line
        except OSError as exc:
            last = exc
        time.sleep(0.01)


def read_line(s: socket.socket, limit: int = 4096) -> bytes:
    """Bytes up to and including the first LF (or `limit`, or the end of the stream)."""
    buf = b""
    while not buf.endswith(b"\n") and len(buf) < limit:
        chunk = s.recv(limit)
        if not chunk:
            break
        buf += chunk
    return buf
