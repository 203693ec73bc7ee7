"""An SMTP sink for tests and benches: aiosmtpd in a child process on 127.0.0.1, saving every
accepted message as files so a test can read exactly what was sent.

    with SmtpSink.start(tmpdir) as sink:       # stops on exit
        ...                                     # send to 127.0.0.1:sink.port
        sink.wait_for(1)                        # [(mail_from, rcpt_tos, exact bytes)]

The child is tests/support/smtp_sink_child.py, run by path with this interpreter.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.certs import make_cert
from tests.support.net import HOST, wait_for_port
from tests.support.procs import stop_child

CHILD = Path(__file__).resolve().with_name("smtp_sink_child.py")


def skip_reason() -> str | None:
    """Why the SMTP sink can't run here, or None."""
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        return "aiosmtpd not installed: pip install -e '.[test]'"
    return None


class SmtpSink:
    """aiosmtpd in a child process on 127.0.0.1, saving each accepted message under
    `folder/messages/` (N.eml exact bytes + N.json envelope). With reply_code (e.g. 550, 451)
    every DATA is answered with that code after MAIL and RCPT were accepted, so smtplib raises
    SMTPDataError(code, ...); refused messages are kept under `folder/refused/`.
    tls=True: STARTTLS with a self-signed cert (`ca_file`), and required before MAIL.
    auth=(user, password): AUTH PLAIN/LOGIN required before MAIL (offered after STARTTLS when
    tls, else over plain text). smtputf8=False: SMTPUTF8 is not offered (RFC 6531)."""

    host = HOST

    def __init__(self, folder: Path, config: dict) -> None:
        self.folder = folder
        self.config = config
        self.port: int = 0
        self.ca_file: Path | None = Path(config["cert"]) if config.get("cert") else None
        self.log_path = folder / "sink.log"
        self._proc: subprocess.Popen | None = None

    @classmethod
    def start(
        cls,
        tmpdir: str | os.PathLike[str],
        *,
        reply_code: int | None = None,
        tls: bool = False,
        auth: tuple[str, str] | None = None,
        port: int = 0,
        timeout: float = 15.0,
        smtputf8: bool = True,
    ) -> SmtpSink:
        if reply_code is not None and not 400 <= reply_code <= 599:
            raise ValueError("reply_code must be a 4xx or 5xx code")
        folder = Path(tempfile.mkdtemp(prefix="smtp-sink-", dir=Path(tmpdir)))
        (folder / "messages").mkdir()
        (folder / "refused").mkdir()
        config: dict = {
            "dir": str(folder),
            "reply_code": reply_code,
            "port": port,
            "smtputf8": smtputf8,
        }
        if tls:
            cert, key = make_cert(folder, "smtp")
            config.update(cert=str(cert), key=str(key))
        if auth is not None:
            config["auth"] = list(auth)
        (folder / "sink.json").write_text(json.dumps(config))
        sink = cls(folder, config)
        sink._spawn(timeout)
        return sink

    def _spawn(self, timeout: float) -> None:
        ready = self.folder / "port"
        ready.unlink(missing_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, str(CHILD), str(self.folder)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                close_fds=True,
            )
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self._proc.poll() is not None:
                self._proc = None
                raise RuntimeError(f"SMTP sink exited at start:\n{self.log_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"SMTP sink not ready after {timeout}s:\n{self.log_text()}")
            time.sleep(0.01)
        self.port = int(ready.read_text())
        wait_for_port(self.host, self.port, max(deadline - time.monotonic(), 1.0), greeting=b"220")

    def _read(self, sub: str) -> list[tuple[str, list[str], bytes]]:
        out = []
        metas = sorted((self.folder / sub).glob("*.json"), key=lambda p: int(p.stem))
        for meta in metas:
            env = json.loads(meta.read_text())
            out.append((env["mail_from"], env["rcpt_tos"], meta.with_suffix(".eml").read_bytes()))
        return out

    def messages(self) -> list[tuple[str, list[str], bytes]]:
        """Accepted messages in arrival order: (mail_from, rcpt_tos, exact DATA bytes)."""
        return self._read("messages")

    def refused(self) -> list[tuple[str, list[str], bytes]]:
        """Messages whose DATA was answered with reply_code."""
        return self._read("refused")

    def envelopes(self) -> list[dict]:
        """The saved envelope records (mail_from, rcpt_tos, tls, authenticated, helo)."""
        metas = sorted((self.folder / "messages").glob("*.json"), key=lambda p: int(p.stem))
        return [json.loads(p.read_text()) for p in metas]

    def wait_for(self, n: int, timeout: float = 10.0) -> list[tuple[str, list[str], bytes]]:
        """Wait until at least n messages were accepted; returns messages()."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.messages()
            if len(got) >= n:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(got)} of {n} messages after {timeout}s")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is not None:
            stop_child(self._proc, signal.SIGTERM, timeout)
            self._proc = None

    def kill(self) -> None:
        if self._proc is not None:
            stop_child(self._proc, signal.SIGKILL, 10)
            self._proc = None

    def restart(self, timeout: float = 15.0) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.config["port"] = self.port
        (self.folder / "sink.json").write_text(json.dumps(self.config))
        self._spawn(timeout)

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_bytes().decode(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> SmtpSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SmtpSink {self.host}:{self.port} {'running' if self.is_running() else 'stopped'}>"
