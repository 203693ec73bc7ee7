"""A private Cyrus IMAP 3.6 for tests: a second IMAP server implementation beside Dovecot.

    from tests.support.cyrus import Cyrus
    from tests.support.imap import append, count

    with Cyrus.start(tmpdir) as cy:             # stops and cleans up on exit
        append(cy, "support", "INBOX", raw)     # the IMAP helpers of tests/support/imap.py
        count(cy, "support", "INBOX.Triage.Processed")

Debian's layout as shipped (`altnamespace: no`, `unixhierarchysep: no`): NAMESPACE answers
`(("INBOX." ".")) (("user." ".")) (("" "."))`, so a user's folders live under "INBOX." and a
name outside it ("Triage.Processed") is a shared folder the user may not create.

Debian's `cyrus-imapd` package conflicts with `dovecot-imapd` (both provide imap-server), so
the Makefile's `servers` target installs `cyrus-common` (master, ctl_cyrusdb, the libraries)
and `sasl2-bin` (saslpasswd2), and unpacks `cyrus-imapd`'s imapd and idled into IMAPD_UNPACKED
with `dpkg-deb -x` instead of installing it. A machine that has `cyrus-imapd` installed uses
its own /usr/lib/cyrus/bin/imapd.

An instance has its own imapd.conf and cyrus.conf, its config, partition, lock, proc and
socket folders in a private folder (0755, under the system temp folder when the caller's is
not traversable by the `cyrus` user, linked from it), a sasldb with its users and an admin
(`cyrus`, random password) that creates each user's mailbox, and listens on free ports on
127.0.0.1: `port` (IMAP, plain text allowed) and `tls_port` (imaps, certificate `ca_file`).
The master starts as root (`master -C imapd.conf -M cyrus.conf -p master.pid`) and runs its
services as the `cyrus` user. Stopped by its own pid (checked against its command line),
never by name; the system instance (/etc/imapd.conf, /var/lib/cyrus) is never touched.

With idled=False (Debian's shipped cyrus.conf: idled commented out) a client in IDLE hears of
new mail only at imapd's next poll (`imapidlepoll`, 60 s); idled=True runs idled, which tells
imapd at once.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.support import procs, scratch
from tests.support.certs import make_cert
from tests.support.net import HOST, free_port, wait_for_port

LIBEXEC = Path("/usr/lib/cyrus/bin")  # cyrus-common: master, ctl_cyrusdb; cyrus-imapd: imapd
IMAPD_UNPACKED = Path("/usr/local/lib/triage-tests/cyrus-imapd")  # dpkg-deb -x cyrus-imapd_*.deb
ADMIN = "cyrus"
_PREFIX = "triage-cyrus-"


def imapd_path() -> Path | None:
    """Cyrus's imapd: the installed package's, else the one the Makefile unpacked."""
    for candidate in (LIBEXEC / "imapd", IMAPD_UNPACKED / "usr/lib/cyrus/bin/imapd"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def skip_reason() -> str | None:
    """Why a private Cyrus can't run here, or None when it can."""
    fix = "run `make servers` (installs cyrus-common and sasl2-bin, unpacks cyrus-imapd's imapd)"
    if not (LIBEXEC / "master").is_file():
        return f"Cyrus is not installed (no {LIBEXEC / 'master'}): {fix}"
    if imapd_path() is None:
        return f"Cyrus's imapd is not there ({IMAPD_UNPACKED}): {fix}"
    if shutil.which("saslpasswd2") is None:
        return f"saslpasswd2 is not installed: {fix}"
    if shutil.which("openssl") is None:
        return "openssl not installed (needed for the test certificate): apt-get install openssl"
    try:
        pwd.getpwnam("cyrus")
    except KeyError:
        return f"no `cyrus` user (cyrus-common makes it): {fix}"
    if os.geteuid() != 0:
        return "a private Cyrus needs root (its master starts as root, services run as cyrus)"
    return None


_STARTED: list[Cyrus] = procs.stopped_at_exit("cleanup")


class Cyrus:
    """A private Cyrus IMAP instance. Create with `Cyrus.start(tmpdir)`."""

    host = HOST

    def __init__(self, root: Path, link: Path | None, users: dict[str, str], idled: bool) -> None:
        self.root = root
        self._link = link
        self.users = {**users, ADMIN: secrets.token_urlsafe(12)}
        self.idled = idled
        self.port = free_port()
        self.tls_port = free_port()
        while self.tls_port == self.port:
            self.tls_port = free_port()
        self.config_path = root / "imapd.conf"
        self.cyrus_conf = root / "cyrus.conf"
        self.pid_file = root / "master.pid"
        self.out_path = root / "master.out"
        self.ca_file: Path | None = None
        self._proc: subprocess.Popen | None = None

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        tmpdir: str | os.PathLike[str],
        *,
        users: dict[str, str] | None = None,
        idled: bool = False,
        timeout: float = 20.0,
    ) -> Cyrus:
        """Start an instance with `users` (default support/secret), each with a mailbox."""
        reason = skip_reason()
        if reason:
            raise RuntimeError(reason)
        users = {"support": "secret"} if users is None else users
        for user in users:
            if not re.fullmatch(r"[a-z0-9_-]+", user) or user == ADMIN:
                raise ValueError(f"unsupported user name for this instance: {user!r}")
        tmp = Path(tmpdir).resolve()
        tmp.mkdir(parents=True, exist_ok=True)
        root = scratch.private_folder(_PREFIX, tmp, _running)
        link = tmp / root.name
        cy = cls(root, link, users, idled)
        try:
            cy._prepare()
            cy._spawn(timeout)
            _STARTED.append(cy)
            cy._create_mailboxes()
        except BaseException:
            cy.cleanup()
            raise
        return cy

    def _prepare(self) -> None:
        cyrus = pwd.getpwnam("cyrus")
        root = self.root
        # conf/socket: each imapd in IDLE binds conf/socket/idle.PID there for idled to reach it
        for name in ("conf", "conf/socket", "part", "proc", "lock", "sieve"):
            (root / name).mkdir()
            os.chown(root / name, cyrus.pw_uid, cyrus.pw_gid)
        sasldb = root / "sasldb2"
        for user, password in self.users.items():
            subprocess.run(
                ["saslpasswd2", "-f", str(sasldb), "-c", "-p", user],
                input=password + "\n",
                text=True,
                check=True,
                capture_output=True,
                timeout=30,
            )
        os.chown(sasldb, cyrus.pw_uid, cyrus.pw_gid)
        os.chmod(sasldb, 0o640)
        cert, key = make_cert(root, "imap")
        os.chown(key, cyrus.pw_uid, cyrus.pw_gid)
        self.ca_file = cert
        imapd = imapd_path()
        idled = imapd.parent / "idled" if imapd else None
        conf = [
            "# Private test instance written by tests/support/cyrus.py; Debian's layout.",
            f"configdirectory: {root / 'conf'}",
            "defaultpartition: default",
            f"partition-default: {root / 'part'}",
            f"proc_path: {root / 'proc'}",
            f"mboxname_lockpath: {root / 'lock'}",
            f"sievedir: {root / 'sieve'}",
            f"idlesocket: {root / 'conf' / 'socket' / 'idle'}",
            f"notifysocket: {root / 'conf' / 'socket' / 'notify'}",
            f"lmtpsocket: {root / 'conf' / 'socket' / 'lmtp'}",
            "altnamespace: no",
            "unixhierarchysep: no",
            "hashimapspool: true",
            f"admins: {ADMIN}",
            "allowplaintext: yes",
            "sasl_pwcheck_method: auxprop",
            "sasl_auxprop_plugin: sasldb",
            f"sasl_sasldb_path: {sasldb}",
            "sasl_mech_list: PLAIN LOGIN",
            f"tls_server_cert: {cert}",
            f"tls_server_key: {key}",
            f"syslog_prefix: {root.name}",
        ]
        self.config_path.write_text("\n".join(conf) + "\n")
        c = f"-C {self.config_path}"
        lines = [
            "START {",
            f'  recover cmd="{LIBEXEC / "ctl_cyrusdb"} {c} -r"',
            "}",
            "SERVICES {",
            f'  imap cmd="{imapd} {c}" listen="{HOST}:{self.port}" prefork=0 maxchild=50',
            f'  imaps cmd="{imapd} -s {c}" listen="{HOST}:{self.tls_port}" prefork=0 maxchild=50',
            "}",
            "EVENTS {",
            f'  checkpoint cmd="{LIBEXEC / "ctl_cyrusdb"} {c} -c" period=30',
            "}",
        ]
        if self.idled:
            lines += ["DAEMON {", f'  idled cmd="{idled} {c}"', "}"]
        self.cyrus_conf.write_text("\n".join(lines) + "\n")

    def _spawn(self, timeout: float) -> None:
        self.pid_file.unlink(missing_ok=True)
        with self.out_path.open("ab") as out:
            self._proc = subprocess.Popen(
                [
                    str(LIBEXEC / "master"),
                    "-C",
                    str(self.config_path),
                    "-M",
                    str(self.cyrus_conf),
                    "-p",
                    str(self.pid_file),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                close_fds=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                self._proc = None
                raise RuntimeError(f"cyrus master exited at start:\n{self.log_text()}")
            try:
                wait_for_port(self.host, self.port, 0.5, greeting=b"* OK")
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(
                        f"cyrus not ready after {timeout}s\n{self.log_text()}"
                    ) from None
        wait_for_port(self.host, self.tls_port, max(deadline - time.monotonic(), 1.0))

    def _create_mailboxes(self) -> None:
        """Each user's INBOX (user.NAME), created by the admin as cyradm would."""
        m = imaplib.IMAP4(self.host, self.port, timeout=10)
        try:
            m.login(ADMIN, self.users[ADMIN])
            for user in self.users:
                if user != ADMIN:
                    typ, data = m.create(f"user.{user}")
                    if typ != "OK":
                        raise RuntimeError(f"cyrus: CREATE user.{user} failed: {data!r}")
        finally:
            with contextlib.suppress(Exception):
                m.logout()

    def _master_pid(self) -> int:
        """Our master's pid, checked against master.pid and its command line."""
        assert self._proc is not None
        pid = self._proc.pid
        with contextlib.suppress(OSError, ValueError):
            recorded = int(self.pid_file.read_text().split()[0])
            if recorded != pid:
                raise RuntimeError(f"{self.pid_file} names {recorded}, but our master is {pid}")
        if str(self.cyrus_conf) not in procs.cmdline(pid):
            raise RuntimeError(f"pid {pid} is not our cyrus master: {procs.cmdline(pid)}")
        return pid

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the master (it ends its services), wait; SIGKILL after `timeout`; then end
        any service process of this instance still running."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            pid = self._master_pid()
            children = procs.descendants(pid)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            for child, start in children:
                if procs.starttime(child) == start and str(self.config_path) in " ".join(
                    procs.cmdline(child)
                ):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)
        self._proc = None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.is_running() else None  # type: ignore[union-attr]

    def log_text(self) -> str:
        """What the master printed (Cyrus logs to syslog, which tests do not read)."""
        try:
            return self.out_path.read_bytes().decode(errors="replace")
        except OSError:
            return ""

    def cleanup(self) -> None:
        """Stop, and remove the instance folder and its link."""
        self.stop()
        with contextlib.suppress(ValueError):
            _STARTED.remove(self)
        if self._link is not None:
            with contextlib.suppress(OSError):
                self._link.unlink()
            shutil.rmtree(self.root, ignore_errors=True)
            self._link = None

    def __enter__(self) -> Cyrus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<Cyrus imap={self.port} imaps={self.tls_port} {state}>"


def _running(folder: Path) -> bool:
    """The master of the instance in `folder` still runs (its folder must stay)."""
    master = int((folder / "master.pid").read_text().split()[0])
    return str(folder / "cyrus.conf") in procs.cmdline(master)
