"""A private Dovecot (Debian's dovecot-imapd, 2.3) for tests and bench scripts.

    with Dovecot.start(tmpdir) as dc:          # stops and cleans up on exit
        append(dc, "support", "INBOX", raw)    # tests.support.imap
        ...

    with Dovecot.start(tmpdir, oauth=True) as dc:  # XOAUTH2 and OAUTHBEARER too
        token = dc.tokens.issue("support")         # then dc.tokens.revoke(token) / .expire(token)

It runs from its own config file (tests/support/dovecot_conf.py): its own instance_name,
base_dir, state_dir and log, listening only on 127.0.0.1 on free ports. The master must start
as root; mail is accessed as nobody:nogroup. Because Dovecot's unprivileged processes must
traverse every folder above the instance, one whose tmpdir is not world-traversable lives in
a private folder (tests/support/scratch.py) linked from tmpdir; `cleanup()` removes it and
copies its log into tmpdir.

With oauth=True the instance also offers XOAUTH2 and OAUTHBEARER, checked by Dovecot's
`oauth2` passdb against `tokens`, an introspection endpoint (tests/support/oauth.py). Password
logins (PLAIN, LOGIN) keep working on the same instance.

Every wait is bounded; processes are stopped by their own pid, never by name.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from tests.support import dovecot_conf, procs, scratch
from tests.support.net import HOST, free_port, wait_for_port
from tests.support.oauth import Introspection
from tests.support.procs import find_tool

PRIVATE_PREFIX = "triage-dovecot-"


def skip_reason() -> str | None:
    """Why a private Dovecot can't run here, or None when it can."""
    if find_tool("dovecot") is None or find_tool("doveconf") is None:
        return (
            "dovecot not installed: run `make test` (installs dovecot-imapd) "
            "or apt-get install dovecot-imapd"
        )
    if find_tool("openssl") is None:
        return "openssl not installed (needed for the test certificate): apt-get install openssl"
    if os.geteuid() != 0:
        return "a private Dovecot needs root (its master starts as root, mail runs as nobody)"
    if not Path("/proc/self/stat").exists():
        return "needs Linux /proc to manage the Dovecot processes"
    return None


def _running(folder: Path) -> bool:
    """The master of the instance in `folder` still runs (its folder must stay)."""
    master = int((folder / "run" / "master.pid").read_text().split()[0])
    fields = procs.proc_fields(master)
    return (
        fields is not None
        and fields[0] != b"Z"
        and str(folder / "dovecot.conf") in procs.cmdline(master)
    )


# Instances started by this process: stopped (and private folders removed) at exit, so a
# caller that only calls stop(), or none, leaves no server and no folder behind.
_STARTED: list[Dovecot] = procs.stopped_at_exit("cleanup")


class PortTaken(RuntimeError):
    """A free port was taken between choosing and binding it: start again on others."""


class Dovecot:
    """A private Dovecot instance. Create with `Dovecot.start(tmpdir)`."""

    host = HOST

    def __init__(
        self,
        root: Path,
        link: Path | None,
        *,
        tls: bool,
        users: dict[str, str],
        port: int,
        tls_port: int | None,
        tokens: Introspection | None = None,
        own_tokens: bool = False,
        auth_socket: bool = False,
        namespace_prefix: str = "",
        process_limit: int | None = None,
    ) -> None:
        self.root = root  # the instance folder (config, sockets, state, log, mail)
        self._link = link  # symlink in the caller's tmpdir when root is a private folder
        self.tls = tls
        self.users = dict(users)
        self.tokens = tokens  # the introspection endpoint behind XOAUTH2/OAUTHBEARER, or None
        self._own_tokens = own_tokens  # started by start(): stopped by cleanup()
        # With auth_socket: Dovecot's authentication for other servers (a private Postfix's
        # SASL, smtpd_sasl_type = dovecot) on this socket, open to every local user.
        self.auth_socket: Path | None = root / "run" / "auth-relay" if auth_socket else None
        self.namespace_prefix = namespace_prefix  # the personal namespace's prefix ("" or "INBOX.")
        # Dovecot's default_process_limit: its default, 100, is also the most imap sessions
        # (and imaps logins, each a process for the whole session) it serves at once
        self.process_limit = process_limit
        self.port: int | None = port
        self.tls_port = tls_port
        self.instance_name = "triage-" + secrets.token_hex(5)
        self.config_path = root / "dovecot.conf"
        self.base_dir = root / "run"
        self.state_dir = root / "state"
        self.log_path = root / "dovecot.log"
        self.stdout_path = root / "dovecot.stdout"
        self.maildir_root = root / "mail"
        self.home_root = root / "home"
        self.ca_file: Path | None = None
        self._proc: subprocess.Popen | None = None

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        tmpdir: str | os.PathLike[str],
        *,
        tls: bool = True,
        users: dict[str, str] | None = None,
        oauth: bool | Introspection = False,
        namespace_prefix: str = "",
        timeout: float = 15.0,
        auth_socket: bool = False,
        process_limit: int | None = None,
    ) -> Dovecot:
        """Start a private instance: an `imap` listener (`port`; offers STARTTLS when tls) and,
        when tls, an `imaps` listener (`tls_port`) with a self-signed cert (`ca_file`).

        namespace_prefix="INBOX." keeps the user's folders under INBOX (NAMESPACE answers
        `(("INBOX." "."))`), as Courier, Cyrus and many hosting providers do: a folder outside
        the prefix ("Triage.Processed") is then refused.

        oauth=True also offers XOAUTH2 and OAUTHBEARER through Dovecot's oauth2 passdb, checked
        against a new `Introspection` endpoint (`tokens`, stopped by cleanup()); pass an
        Introspection instead to use one the caller started and stops.

        auth_socket=True also serves Dovecot's authentication to other local servers on
        `auth_socket` (a private Postfix checks SMTP AUTH against these users there).

        process_limit raises Dovecot's default_process_limit (100): above about 100 clients
        at once (imaps logins hold a process each for the whole session) it must be set."""
        reason = skip_reason()
        if reason:
            raise RuntimeError(reason)
        users = {"support": "secret"} if users is None else users
        for user, password in users.items():
            if not re.fullmatch(r"[A-Za-z0-9._@+-]+", user) or any(c in password for c in ":\n"):
                raise ValueError(f"unsupported user or password for the passwd-file: {user!r}")
        if namespace_prefix not in ("", "INBOX."):
            raise ValueError(f"namespace_prefix must be '' or 'INBOX.', not {namespace_prefix!r}")
        tmp = Path(tmpdir).resolve()
        tmp.mkdir(parents=True, exist_ok=True)
        tokens = Introspection.start() if oauth is True else oauth or None
        own_tokens = oauth is True
        if scratch.world_traversable(tmp) and len(str(tmp)) < scratch.MAX_ROOT_LEN - 20:
            root, link = Path(tempfile.mkdtemp(prefix="dovecot-", dir=tmp)), None
        else:
            root = scratch.private_folder(PRIVATE_PREFIX, tmp, _running)
            link = tmp / root.name
        os.chmod(root, 0o755)
        dc: Dovecot | None = None
        try:
            for attempt in range(3):  # a free port can be taken between choosing and binding
                port = free_port()
                tls_port = None
                if tls:
                    tls_port = free_port()
                    while tls_port == port:
                        tls_port = free_port()
                dc = cls(
                    root,
                    link,
                    tls=tls,
                    users=users,
                    port=port,
                    tls_port=tls_port,
                    tokens=tokens,
                    own_tokens=own_tokens,
                    auth_socket=auth_socket,
                    namespace_prefix=namespace_prefix,
                    process_limit=process_limit,
                )
                dovecot_conf.prepare(dc)
                try:
                    dc._spawn(timeout)
                    _STARTED.append(dc)
                    return dc
                except PortTaken:
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")
        except BaseException:
            if dc is not None:
                dc.cleanup()
            else:
                shutil.rmtree(root, ignore_errors=True)
                if link is not None:
                    link.unlink(missing_ok=True)
                if own_tokens and tokens is not None:
                    tokens.stop()
            raise

    def _spawn(self, timeout: float) -> None:
        (self.base_dir / "master.pid").unlink(missing_ok=True)
        start = self.stdout_path.stat().st_size if self.stdout_path.exists() else 0
        with self.stdout_path.open("ab") as out:
            self._proc = subprocess.Popen(
                [find_tool("dovecot") or "dovecot", "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                close_fds=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                text = self.stdout_path.read_bytes()[start:].decode(errors="replace")
                self._proc = None
                if "Address already in use" in text:
                    raise PortTaken(text)
                raise RuntimeError(f"dovecot exited at start:\n{text}\n{self._log_tail()}")
            try:
                wait_for_port(self.host, self.port, 0.2, greeting=b"* OK")
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(
                        f"dovecot not ready after {timeout}s\n{self._log_tail()}"
                    ) from None
        if self.tls_port:
            wait_for_port(self.host, self.tls_port, max(deadline - time.monotonic(), 1.0))

    def _log_tail(self, n: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def _master_pid(self) -> int:
        """The master's pid, checked: our child, named in master.pid, running dovecot -c ours."""
        assert self._proc is not None
        pid = self._proc.pid
        pidfile = self.base_dir / "master.pid"
        with contextlib.suppress(OSError, ValueError):
            recorded = int(pidfile.read_text().split()[0])
            if recorded != pid:
                raise RuntimeError(f"{pidfile} names {recorded}, but our master is {pid}")
        argv = procs.cmdline(pid)
        if argv and (
            not os.path.basename(argv[0]).startswith("dovecot") or str(self.config_path) not in argv
        ):
            raise RuntimeError(f"pid {pid} is not our dovecot: {argv}")
        return pid

    def stop(self, timeout: float = 10.0, *, fast: bool = True) -> None:
        """SIGTERM the master and wait for it (SIGKILL after timeout).

        Dovecot's master leaves running imap sessions behind when it exits, so stop() SIGTERMs
        those too: afterwards no connection to this instance stays open (clients get
        "* BYE Server shutting down."). fast=False then waits for the master's own exit, which
        takes 1 s or more: after ending its services it SIGQUITs its log process and sleeps
        1 s (seen with strace), longer when a login process is slow to go. fast=True (about
        20 ms) SIGKILLs the master as soon as only its log process is left, i.e. when nothing
        but that sleep remains. Service processes still there after 0.5 s get SIGTERM, after
        2 s SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            pid = self._master_pid()
            seen = set(procs.descendants(pid))
            proc.send_signal(signal.SIGTERM)
            now = time.monotonic()
            deadline, nudge, escalate = now + timeout, now + 0.5, now + 2.0
            told: set[tuple[int, int]] = set()
            while proc.poll() is None and time.monotonic() < deadline:
                live = [p for p in procs.descendants(pid) if procs.alive(*p)]
                seen.update(live)
                titles = {p: (procs.cmdline(p[0])[:1] or [""])[0] for p in live}
                others = [p for p in live if titles[p] != self._title("log")]
                if fast and not others:
                    proc.kill()  # only its final sleep is left
                    break
                # the master ends its services itself, but not imap sessions, and a login
                # process can linger for seconds (waiting on the stopped stats service)
                now = time.monotonic()
                front = (self._title("imap"), self._title("imap-login"))
                targets = [p for p in others if titles[p] in front or now > nudge]
                sig = signal.SIGKILL if now > escalate else signal.SIGTERM
                fresh = [p for p in targets if p not in told or sig == signal.SIGKILL]
                procs.signal_matching(fresh, sig, self._marks())
                told.update(targets)
                time.sleep(0.005)
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            # the log process and any sessions the master left behind (now children of init)
            leftover = list(seen)
            procs.signal_matching(leftover, signal.SIGTERM, self._marks())
            if not procs.wait_gone(leftover, 5.0):
                procs.signal_matching(leftover, signal.SIGKILL, self._marks())
                procs.wait_gone(leftover, 5.0)
        self._proc = None
        (self.base_dir / "master.pid").unlink(missing_ok=True)

    def _marks(self) -> tuple[str, ...]:
        """What the command line of one of this instance's processes contains: its process
        title, or (between fork and exec) the master's arguments."""
        return (f"dovecot-{self.instance_name}/", str(self.config_path))

    def _title(self, service: str) -> str:
        """The process title Dovecot gives a service process of this instance."""
        return f"dovecot-{self.instance_name}/{service}"

    def kill(self, *, sessions: bool = True) -> None:
        """Crash: SIGKILL the master and (sessions=True) every process it started, so open
        connections are cut. With sessions=False, open imap sessions live on (what a lone master
        crash does) but nothing accepts new connections."""
        if self._proc is None or self._proc.poll() is not None:
            self._proc = None
            return
        pid = self._master_pid()
        started = procs.descendants(pid)
        self._proc.kill()
        self._proc.wait(10)
        if sessions:
            procs.signal_matching(started, signal.SIGKILL, self._marks())
            procs.wait_gone(started, 5.0)
        self._proc = None
        (self.base_dir / "master.pid").unlink(missing_ok=True)

    def restart(self, timeout: float = 15.0) -> None:
        """Stop (if running) and start again with the same config, ports and maildir."""
        self.stop()
        try:
            self._spawn(timeout)
        except PortTaken as exc:
            raise RuntimeError(f"cannot restart on the same ports: {exc}") from None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.is_running() else None  # type: ignore[union-attr]

    def log_text(self) -> str:
        """Dovecot's log, then anything it printed on stdout/stderr (start-up errors)."""
        parts = []
        for p in (self.log_path, self.stdout_path):
            with contextlib.suppress(OSError):
                parts.append(p.read_bytes().decode(errors="replace"))
        return "\n".join(x for x in parts if x)

    def cleanup(self) -> None:
        """Stop, and remove a private instance folder (its log is copied into tmpdir first).
        Done at interpreter exit for every instance still around."""
        self.stop()
        with contextlib.suppress(ValueError):
            _STARTED.remove(self)
        if self._own_tokens and self.tokens is not None:
            self.tokens.stop()
            self._own_tokens = False
        if self._link is not None:
            with contextlib.suppress(OSError):
                self._link.unlink()
                self._link.with_suffix(".log").write_text(self.log_text())
            shutil.rmtree(self.root, ignore_errors=True)
            self._link = None

    def doveadm(self, *args: str, timeout: float = 30.0) -> str:
        """Run `doveadm -c <our config> ARGS`; returns stdout, raises on failure."""
        res = subprocess.run(
            [find_tool("doveadm") or "doveadm", "-c", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if res.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed: {res.stderr.strip()}")
        return res.stdout

    def connections(self, port: int | None = None) -> set[tuple[str, str]]:
        """Client connections open to `port` (default: its imap and imaps ports), as
        (local, remote) address pairs from /proc/net/tcp: the server's ends, ESTABLISHED,
        whoever the clients are. Not a snapshot: see `tcp_connections`."""
        return tcp_connections({port} if port else {p for p in (self.port, self.tls_port) if p})

    def __enter__(self) -> Dovecot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        oauth = " +oauth2" if self.tokens else ""
        return (
            f"<Dovecot {self.instance_name} imap={self.port} imaps={self.tls_port}{oauth} {state}>"
        )


def tcp_connections(ports: set[int]) -> set[tuple[str, str]]:
    """ESTABLISHED TCP connections whose local port is one of `ports` (IPv4 and IPv6), as
    (local, remote) address pairs.

    The kernel walks its table while it writes the file, so one read is no snapshot: a
    connection closed after its line was written and one opened before its line was reached
    are both listed. Those in two reads one after the other were all open at once, at the
    moment between the reads (`Concurrent`)."""
    seen = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f, None)  # the heading
            for line in f:
                fields = line.split(maxsplit=4)
                local, remote, state = fields[1], fields[2], fields[3]
                if state == "01" and int(local.rsplit(":", 1)[1], 16) in ports:
                    seen.add((local, remote))
    return seen


class Concurrent(threading.Thread):
    """The most connections to `port` of `server` seen open at once, looked at every `every`
    seconds: the connections found by two reads of /proc/net/tcp one after the other (a
    lower bound, never an artefact of one read; an extra connection lives for at least its
    TLS handshake and login, far longer than a read)."""

    def __init__(self, server: Dovecot, port: int, every: float = 0.001) -> None:
        super().__init__(daemon=True)
        self.server, self.port, self.every = server, port, every
        self.most = 0
        self._done = threading.Event()

    def run(self) -> None:
        before = self.server.connections(self.port)
        while not self._done.is_set():
            now = self.server.connections(self.port)
            self.most = max(self.most, len(before & now))
            before = now
            time.sleep(self.every)

    def stop(self) -> int:
        """Stop looking; the most seen at once."""
        self._done.set()
        self.join(5)
        return self.most
