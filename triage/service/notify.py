"""sd_notify, written straight to $NOTIFY_SOCKET (no libsystemd).

The protocol (sd_notify(3)): one datagram of newline-separated KEY=VALUE lines sent to the
AF_UNIX socket named by $NOTIFY_SOCKET; a name starting with '@' is an abstract socket.

    notifier = Notifier.from_env()
    notifier.ready()                       # after startup: systemd marks the unit active
    notifier.status("2 mailboxes, idle")   # shown by `systemctl status triage`
    interval = notifier.watchdog_interval()  # seconds between watchdog() calls, or None
    notifier.watchdog()
    notifier.reloading(); ...; notifier.ready()   # around a SIGHUP reload
    notifier.stopping()                    # on SIGTERM, before finishing the message in hand

Every method is a no-op when $NOTIFY_SOCKET is unset, and none ever raises: a failed send is
logged once (structlog, event `sd_notify_failed`) and otherwise ignored.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from collections.abc import Mapping

from triage import log

_LINE_BREAKS = re.compile(r"[\r\n]+")
_STATUS_MAX = 1024  # characters; systemd keeps status text short, so do we
_SEND_TIMEOUT = 2.0  # seconds; a datagram to a live systemd never waits this long


def _one_line(value: object) -> str:
    return _LINE_BREAKS.sub(" ", str(value)).replace("\0", "").strip()


def _socket_address(name: str) -> bytes | None:
    """$NOTIFY_SOCKET -> an AF_UNIX address; None when it is not one we can use."""
    if name.startswith("@"):
        return b"\0" + os.fsencode(name[1:])
    if name.startswith("/"):
        return os.fsencode(name)
    return None  # relative paths and vsock: are not for us


class Notifier:
    """Talks to the service manager; harmless when there is none."""

    def __init__(
        self,
        socket_name: str | None = None,
        *,
        watchdog_usec: str | None = None,
        watchdog_pid: str | None = None,
    ) -> None:
        self.socket_name = socket_name or None
        self._address = _socket_address(self.socket_name) if self.socket_name else None
        self._watchdog_usec = watchdog_usec
        self._watchdog_pid = watchdog_pid
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._failure_logged = False
        if self.socket_name and self._address is None:
            self._failed(ValueError("NOTIFY_SOCKET is neither an absolute path nor @abstract"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        """A notifier for $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID of `environ`."""
        return cls(
            environ.get("NOTIFY_SOCKET"),
            watchdog_usec=environ.get("WATCHDOG_USEC"),
            watchdog_pid=environ.get("WATCHDOG_PID"),
        )

    @property
    def enabled(self) -> bool:
        """True when there is a socket to send to."""
        return self._address is not None

    # ------------------------------------------------------------------ messages

    def ready(self) -> bool:
        """READY=1: startup (or a reload) is complete."""
        return self.send(READY=1)

    def status(self, text: str) -> bool:
        """STATUS=<text>, on one line: what `systemctl status` shows."""
        return self.send(STATUS=_one_line(text)[:_STATUS_MAX])

    def watchdog(self) -> bool:
        """WATCHDOG=1: still alive. Send it every watchdog_interval() seconds."""
        return self.send(WATCHDOG=1)

    def stopping(self) -> bool:
        """STOPPING=1: shutting down."""
        return self.send(STOPPING=1)

    def reloading(self) -> bool:
        """RELOADING=1 with MONOTONIC_USEC (systemd 253+, Type=notify-reload).

        Send ready() when the reload is done (or rejected and the old config kept).
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(RELOADING=1, MONOTONIC_USEC=usec)

    def send(self, **fields: object) -> bool:
        """Send KEY=VALUE lines in one datagram; True when it was sent.

        Keys are upper-cased (`send(extend_timeout_usec=...)` is EXTEND_TIMEOUT_USEC);
        True/False become 1/0; values are put on one line.
        """
        if self._address is None or not fields:
            return False
        lines = []
        for key, value in fields.items():
            if isinstance(value, bool):
                value = int(value)
            lines.append(f"{key.upper()}={_one_line(value)}")
        payload = "\n".join(lines).encode("utf-8")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sock.settimeout(_SEND_TIMEOUT)
                self._sock.sendto(payload, self._address)
            except OSError as exc:
                self._failed(exc)
                return False
        return True

    # ------------------------------------------------------------------ watchdog

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog() calls: half of $WATCHDOG_USEC.

        None when there is no notify socket, no (valid) WATCHDOG_USEC, or WATCHDOG_PID
        names another process (the watchdog is for the main process only).
        """
        if self._address is None or not self._watchdog_usec:
            return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        if usec <= 0:
            return None
        if self._watchdog_pid:
            try:
                if int(self._watchdog_pid) != os.getpid():
                    return None
            except ValueError:
                return None
        return usec / 2 / 1_000_000

    # ------------------------------------------------------------------ housekeeping

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def _failed(self, exc: BaseException) -> None:
        if self._failure_logged:
            return
        self._failure_logged = True
        with contextlib.suppress(Exception):  # logging must not break the daemon either
            log.get(component="notify").warning(
                "sd_notify_failed",
                socket=self.socket_name,
                error=f"{type(exc).__name__}: {exc}",
                note="further sd_notify failures are not logged",
            )
