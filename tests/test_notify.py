"""sd_notify over a real AF_UNIX datagram socket: exact datagrams, and never an exception."""

from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from triage import log
from triage.service.notify import Notifier

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs AF_UNIX sockets")


@pytest.fixture
def short_dir(tmp_path: Path) -> Path:
    """tmp_path, unless its name is too long for an AF_UNIX address (108 bytes)."""
    if len(os.fsencode(tmp_path / "notify.sock")) < 100:
        return tmp_path
    return Path(tempfile.mkdtemp(prefix="tn-"))


@pytest.fixture
def listener(short_dir: Path):
    """(socket, NOTIFY_SOCKET value) for a datagram socket bound to a file."""
    path = short_dir / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield sock, str(path)
    sock.close()


@pytest.fixture
def abstract_listener():
    name = f"triage-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    yield sock, "@" + name
    sock.close()


def received(sock: socket.socket) -> bytes:
    return sock.recv(65536)


def test_each_message_is_one_exact_datagram(listener):
    sock, name = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": name})
    assert n.enabled
    assert n.ready() is True
    assert received(sock) == b"READY=1"
    n.status("2 mailboxes, idle")
    assert received(sock) == b"STATUS=2 mailboxes, idle"
    n.watchdog()
    assert received(sock) == b"WATCHDOG=1"
    n.stopping()
    assert received(sock) == b"STOPPING=1"
    n.close()


def test_abstract_socket(abstract_listener):
    sock, name = abstract_listener
    assert name.startswith("@")
    n = Notifier.from_env({"NOTIFY_SOCKET": name})
    n.ready()
    assert received(sock) == b"READY=1"
    n.status("ok")
    assert received(sock) == b"STATUS=ok"


def test_status_is_one_line(listener):
    sock, name = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": name})
    n.status("support: connected\r\nbilling: failing\nretry in 30 s\r")
    assert received(sock) == b"STATUS=support: connected billing: failing retry in 30 s"
    n.status("x" * 5000)
    data = received(sock)
    assert data.startswith(b"STATUS=x") and b"\n" not in data and len(data) <= 1100


def test_status_keeps_utf8(listener):
    sock, name = listener
    Notifier.from_env({"NOTIFY_SOCKET": name}).status("Zürich: 3 offen")
    assert received(sock) == "STATUS=Zürich: 3 offen".encode()


def test_reloading_carries_the_monotonic_clock(listener):
    sock, name = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": name})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    n.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = received(sock).decode().split("\n")
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_send_several_fields_in_one_datagram(listener):
    sock, name = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": name})
    assert n.send(READY=1, status="up\nand running", extend_timeout_usec=5_000_000, x=True)
    assert received(sock) == b"READY=1\nSTATUS=up and running\nEXTEND_TIMEOUT_USEC=5000000\nX=1"
    assert n.send() is False  # nothing to say: nothing sent


def test_from_env_reads_os_environ_by_default(listener, monkeypatch):
    sock, name = listener
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    Notifier.from_env().ready()
    assert received(sock) == b"READY=1"


def test_no_socket_everything_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    for n in (Notifier.from_env(), Notifier.from_env({}), Notifier.from_env({"NOTIFY_SOCKET": ""})):
        assert not n.enabled
        assert n.ready() is False
        assert n.status("x") is False
        assert n.watchdog() is False
        assert n.stopping() is False
        assert n.reloading() is False
        assert n.send(READY=1) is False
        assert n.watchdog_interval() is None
        n.close()


def test_vanished_socket_never_raises_and_is_logged_once(short_dir):
    path = short_dir / "gone.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    n = Notifier.from_env({"NOTIFY_SOCKET": str(path)})
    sock.close()
    path.unlink()
    log.get()  # configure structlog first, so capture_logs is not undone by the first log.get()
    with capture_logs() as logs:
        assert n.ready() is False
        assert n.watchdog() is False
        assert n.status("still here") is False
        assert n.stopping() is False
    failures = [e for e in logs if e["event"] == "sd_notify_failed"]
    assert len(failures) == 1
    assert failures[0]["log_level"] == "warning"
    assert failures[0]["socket"] == str(path)


def test_socket_that_comes_back_is_used_again(short_dir):
    path = short_dir / "back.sock"
    n = Notifier.from_env({"NOTIFY_SOCKET": str(path)})
    assert n.ready() is False  # nothing there yet
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    try:
        assert n.ready() is True
        assert received(sock) == b"READY=1"
    finally:
        sock.close()


@pytest.mark.parametrize("name", ["relative/notify.sock", "vsock:2:1234", "@" + "x" * 200])
def test_unusable_socket_names_never_raise(name):
    n = Notifier.from_env({"NOTIFY_SOCKET": name})
    assert n.ready() is False
    assert n.status("x") is False


USEC_60S = "60000000"


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        (USEC_60S, None, 30.0),
        (USEC_60S, "self", 30.0),
        (USEC_60S, "other", None),
        (USEC_60S, "not-a-pid", None),
        ("3000000", None, 1.5),
        (None, None, None),
        ("0", None, None),
        ("-5", None, None),
        ("sixty", None, None),
    ],
)
def test_watchdog_interval(listener, usec, pid, expected):
    _, name = listener
    env = {"NOTIFY_SOCKET": name}
    if usec is not None:
        env["WATCHDOG_USEC"] = usec
    if pid == "self":
        env["WATCHDOG_PID"] = str(os.getpid())
    elif pid == "other":
        env["WATCHDOG_PID"] = str(os.getpid() + 1)
    elif pid is not None:
        env["WATCHDOG_PID"] = pid
    assert Notifier.from_env(env).watchdog_interval() == expected


def test_watchdog_interval_needs_a_socket():
    assert Notifier.from_env({"WATCHDOG_USEC": USEC_60S}).watchdog_interval() is None
