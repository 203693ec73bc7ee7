"""A private Postfix (Debian's `postfix` package) as the SMTP relay in tests and benches.

    from tests.support.dovecot import Dovecot
    from tests.support.postfix import Postfix
    from tests.support.smtp_sink import SmtpSink

    with Dovecot.start(tmp, auth_socket=True) as dc, SmtpSink.start(tmp) as sink:
        with Postfix.start(tmp, relay_to=sink.port, sasl=dc.auth_socket, tls=True) as relay:
            ...  # submit to 127.0.0.1:relay.port with AUTH as a Dovecot user; mail arrives at sink

Its own config_directory, queue_directory and data_directory in a private folder, a listener
on a free 127.0.0.1 port, every service unchrooted, its log in `log_path` (postlogd). The master
is started directly (`master -c DIR -d`, in the foreground) and stopped by its pid: the system's
/etc/postfix and any running system instance are never read, written or signalled.

Everything it accepts goes on to `relay_to` (a port on 127.0.0.1, e.g. an SmtpSink), so a test
sees what a real relay passed on. With `sasl` (a Dovecot auth socket, see
`Dovecot.start(auth_socket=True)`) relaying needs SMTP AUTH, answered `535 5.7.8` when the
password is wrong; without it, 127.0.0.1 may relay. `smtputf8=False` stops it offering SMTPUTF8.

Postfix's processes run as the unprivileged user `postfix` and must reach the queue, so the
instance lives in a 0755 folder under the system temporary folder, with a symlink to it in
the caller's folder; stop() removes it and keeps the log beside the symlink.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support import procs
from tests.support.certs import make_cert
from tests.support.net import HOST, free_port, wait_for_port

MASTER = Path("/usr/lib/postfix/sbin/master")
DAEMONS = Path("/usr/lib/postfix/sbin")
_QUEUE_DIRS = (
    "active",
    "bounce",
    "corrupt",
    "defer",
    "deferred",
    "flush",
    "hold",
    "incoming",
    "private",
    "saved",
    "trace",
)
# name type private unpriv chroot wakeup maxproc command: a minimal master.cf, nothing chrooted
_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def skip_reason() -> str | None:
    """Why a private Postfix can't run here, or None when it can."""
    if not MASTER.is_file():
        return (
            "postfix not installed: run `make test` (installs postfix) or apt-get install postfix"
        )
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "the postfix user is missing (installed by Debian's postfix package)"
    if os.geteuid() != 0:
        return "a private Postfix needs root (its master starts as root, services run as postfix)"
    return None


_STARTED: list[Postfix] = procs.stopped_at_exit("stop")


class Postfix:
    """A private Postfix instance. Create with `Postfix.start(tmpdir, relay_to=PORT)`."""

    host = HOST

    def __init__(self, root: Path, link: Path) -> None:
        self.root = root
        self.link = link
        self.config_dir = root / "conf"
        self.queue_dir = root / "queue"
        self.data_dir = root / "data"
        self.log_path = root / "postfix.log"
        self.port = 0
        self.ca_file: Path | None = None
        self._proc: subprocess.Popen | None = None

    @classmethod
    def start(
        cls,
        tmpdir: str | os.PathLike[str],
        *,
        relay_to: int,
        sasl: Path | None = None,
        tls: bool = False,
        smtputf8: bool = True,
        timeout: float = 20.0,
    ) -> Postfix:
        """Start an instance that passes what it accepts on to 127.0.0.1:`relay_to`.

        sasl: a Dovecot auth socket; relaying then needs SMTP AUTH (PLAIN, LOGIN).
        tls: STARTTLS with a self-signed certificate for 127.0.0.1 (`ca_file`)."""
        reason = skip_reason()
        if reason:
            raise RuntimeError(reason)
        root = Path(tempfile.mkdtemp(prefix="triage-postfix-", dir=tempfile.gettempdir()))
        os.chmod(root, 0o755)
        link = Path(tmpdir).resolve() / root.name
        link.symlink_to(root, target_is_directory=True)
        pf = cls(root, link)
        try:
            pf._prepare(relay_to, sasl, tls, smtputf8)
            pf._spawn(timeout)
        except BaseException:
            pf.stop()
            raise
        _STARTED.append(pf)
        return pf

    def _prepare(self, relay_to: int, sasl: Path | None, tls: bool, smtputf8: bool) -> None:
        owner = pwd.getpwnam("postfix")
        postdrop = _group_id("postdrop")
        for d in (self.config_dir, self.queue_dir):
            d.mkdir(mode=0o755)
        for name in _QUEUE_DIRS:
            (self.queue_dir / name).mkdir(mode=0o700)
            os.chown(self.queue_dir / name, owner.pw_uid, -1)
        for name, mode in (("maildrop", 0o730), ("public", 0o710)):
            (self.queue_dir / name).mkdir()
            os.chown(self.queue_dir / name, owner.pw_uid, postdrop)
            os.chmod(self.queue_dir / name, mode)
        (self.queue_dir / "pid").mkdir(mode=0o755)
        self.data_dir.mkdir(mode=0o700)
        os.chown(self.data_dir, owner.pw_uid, -1)
        self.port = free_port()
        main = [
            "# Private test instance written by tests/support/postfix.py",
            "compatibility_level = 3.6",
            f"queue_directory = {self.queue_dir}",
            f"data_directory = {self.data_dir}",
            "command_directory = /usr/sbin",
            f"daemon_directory = {DAEMONS}",
            "mail_owner = postfix",
            "setgid_group = postdrop",
            "myhostname = relay.test.invalid",
            "mydomain = test.invalid",
            "myorigin = $mydomain",
            "mydestination =",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "local_recipient_maps =",
            "alias_maps =",
            "alias_database =",
            "biff = no",
            f"relayhost = [127.0.0.1]:{relay_to}",
            "smtp_tls_security_level = none",
            f"smtputf8_enable = {'yes' if smtputf8 else 'no'}",
            f"maillog_file = {self.log_path}",
            f"maillog_file_prefixes = {self.root}",
        ]
        if sasl is not None:
            main += [
                "mynetworks =",
                "smtpd_sasl_auth_enable = yes",
                "smtpd_sasl_type = dovecot",
                f"smtpd_sasl_path = {sasl}",
                "smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination",
            ]
        else:
            main += [
                "mynetworks = 127.0.0.0/8",
                "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
            ]
        if tls:
            cert, key = make_cert(self.root, "relay")
            self.ca_file = cert
            main += [
                "smtpd_tls_security_level = may",
                f"smtpd_tls_cert_file = {cert}",
                f"smtpd_tls_key_file = {key}",
            ]
        (self.config_dir / "main.cf").write_text("\n".join(main) + "\n")
        (self.config_dir / "master.cf").write_text(
            f"{HOST}:{self.port} inet n - n - - smtpd\n" + _SERVICES
        )
        # postconf only reads: `postfix check` would also fix permissions it cares about
        check = subprocess.run(
            ["/usr/sbin/postconf", "-c", str(self.config_dir), "-n"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if check.returncode != 0 or "warning" in check.stderr:
            raise RuntimeError(f"postconf refused {self.config_dir}:\n{check.stderr}")

    def _spawn(self, timeout: float) -> None:
        self._proc = subprocess.Popen(
            [str(MASTER), "-c", str(self.config_dir), "-d"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"postfix master exited at start:\n{self.log_text()}")
            try:
                wait_for_port(HOST, self.port, 0.5, greeting=b"220")
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"postfix not ready after {timeout}s:\n{self.log_text()}"
                    ) from None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def queued(self) -> int:
        """Messages still in its queue (not yet passed on)."""
        count = 0
        for name in ("incoming", "active", "deferred", "hold"):
            with contextlib.suppress(OSError):
                count += sum(1 for p in (self.queue_dir / name).rglob("*") if p.is_file())
        return count

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the master (it ends its services), SIGKILL after `timeout`; then any
        service it left behind; then remove the instance folder, keeping the log."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            services = procs.descendants(proc.pid)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            deadline = time.monotonic() + 5
            while any(procs.alive(*p) for p in services) and time.monotonic() < deadline:
                time.sleep(0.02)
            for pid, start in services:
                if procs.alive(pid, start):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ValueError):
            _STARTED.remove(self)
        if self.root.exists():
            with contextlib.suppress(OSError):
                self.link.with_suffix(".log").write_text(self.log_text())
            self.link.unlink(missing_ok=True)
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Postfix:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Postfix {HOST}:{self.port} {'running' if self.pid else 'stopped'}>"


def _group_id(name: str) -> int:
    import grp

    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return -1
