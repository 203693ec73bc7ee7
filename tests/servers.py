"""Real servers for tests and bench scripts: a private Dovecot and an aiosmtpd SMTP sink.

A plain module (no pytest import) so bench scripts can use it too:

    from tests.servers import Dovecot, SmtpSink, append, count

    with Dovecot.start(tmpdir) as dc:          # stops and cleans up on exit
        append(dc, "support", "INBOX", raw)
        ...

    with Dovecot.start(tmpdir, oauth=True) as dc:  # XOAUTH2 and OAUTHBEARER too
        token = dc.tokens.issue("support")         # then dc.tokens.revoke(token) / .expire(token)

Dovecot (Debian's dovecot-imapd, 2.3) runs as a private instance from its own config file: its
own instance_name, base_dir, state_dir and log, listening only on 127.0.0.1 on free ports. The
master must start as root; mail is accessed as nobody:nogroup. Because Dovecot's unprivileged
processes (imap as nobody, auth as dovecot) must traverse every directory above the instance,
and pytest's tmp_path lives under a 0700 folder (which pytest resets to 0700 at every session
start, so widening it would break instances of a concurrent session), an instance whose tmpdir
is not world-traversable lives in a private 0755 folder under the system temp folder, with a
symlink to it in tmpdir; `cleanup()` removes that folder and copies its log into tmpdir.

With oauth=True the instance also offers XOAUTH2 and OAUTHBEARER, checked by Dovecot's `oauth2`
passdb against `tokens`, an OAuth 2.0 token introspection endpoint (RFC 7662) that this module
serves on 127.0.0.1 from a thread: it knows which tokens are valid for which user and can be
told to revoke or expire one. Password logins (PLAIN, LOGIN) keep working on the same instance.

The SMTP sink is aiosmtpd in a child process (this file, run with sys.executable), saving every
accepted message as files so a test can read exactly what was sent.

Every wait is bounded; processes are stopped by their own pid, never by name.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import http.server
import imaplib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

HOST = "127.0.0.1"

_SBIN = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")

# Unix socket paths are limited to 108 bytes; Dovecot's longest socket below base_dir is
# "token-login/imap-urlauth" / "replication-notify-fifo" (about 25 characters).
_MAX_ROOT_LEN = 60


# --------------------------------------------------------------------------- generic helpers


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
                line = _read_line(s)
                if line.startswith(greeting):
                    return line
                last = line
        except OSError as exc:
            last = exc
        time.sleep(0.01)


def _read_line(s: socket.socket, limit: int = 4096) -> bytes:
    buf = b""
    while not buf.endswith(b"\n") and len(buf) < limit:
        chunk = s.recv(limit)
        if not chunk:
            break
        buf += chunk
    return buf


def _find(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    for d in _SBIN:
        p = Path(d, tool)
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


REPO = Path(__file__).resolve().parent.parent


def run_daemon(config: Path, log: Path, **popen: object) -> subprocess.Popen:
    """`triage run --config CONFIG` from this checkout, its log (stderr) appended to `log`.

    NOTIFY_SOCKET is dropped from the environment unless `env` is given: a daemon under
    test must not talk to the systemd that runs the tests.
    """
    env = popen.pop("env", None)
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "triage.cli", "run", "--config", str(config)],
            cwd=REPO,
            env={**env, "PYTHONPATH": str(REPO)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            **popen,
        )


def db_rows(path: Path, sql: str, *args: object) -> list[tuple]:
    """Rows of a query on a daemon's database, read-only; none while it does not exist or is busy."""
    if not path.exists():
        return []
    conn = sqlite3.connect(path, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def log_events(path: str | os.PathLike[str], event: str | None = None) -> list[dict]:
    """The JSON objects in a daemon's JSON-lines log (structlog output), in order; only those
    whose "event" is `event` when given. Lines that are not JSON objects (tracebacks, a line
    cut short by a kill) are skipped, and a log that does not exist (yet) reads as empty."""
    out = []
    with contextlib.suppress(OSError):
        for line in Path(path).read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
    if event is not None:
        out = [e for e in out if e.get("event") == event]
    return out


def make_cert(directory: Path, name: str = "cert") -> tuple[Path, Path]:
    """A self-signed certificate for CN localhost, SAN DNS:localhost and IP:127.0.0.1 (EC P-256,
    made by `openssl req -x509`). Returns (cert_file, key_file); the cert is also the CA to trust."""
    openssl = _find("openssl")
    if openssl is None:
        raise RuntimeError("openssl not installed")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "3650",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    os.chmod(cert, 0o644)
    os.chmod(key, 0o600)
    return cert, key


def client_ssl_context(ca_file: str | os.PathLike[str]) -> ssl.SSLContext:
    """A verifying client context that trusts only `ca_file` (hostname checked)."""
    return ssl.create_default_context(cafile=str(ca_file))


# --------------------------------------------------------------------------- processes


def proc_fields(pid: int | str) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (state first: see proc(5), less
    two), or None when the process is gone. The name may hold spaces and ')': it is cut at
    the last ')'."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return raw[raw.rindex(b")") + 2 :].split()


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, starttime) of a live pid from /proc, or None."""
    fields = proc_fields(pid)
    return None if fields is None else (fields[0].decode(), int(fields[1]), int(fields[19]))


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _descendants(pid: int) -> list[tuple[int, int]]:
    """(pid, starttime) of every descendant of pid, from one snapshot of /proc."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _proc_stat(int(entry))
        if st is not None:
            children.setdefault(st[1], []).append((int(entry), st[2]))
    out: list[tuple[int, int]] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child[0])
    return out


def _same_alive(pid: int, starttime: int) -> bool:
    st = _proc_stat(pid)
    return st is not None and st[2] == starttime and st[0] not in ("Z", "X")


def _signal_procs(procs: list[tuple[int, int]], sig: int, marks: tuple[str, ...]) -> None:
    """Signal each (pid, starttime) that is still the same process and whose command line
    (process title) contains one of marks."""
    for pid, start in procs:
        if not _same_alive(pid, start):
            continue
        cmd = " ".join(_cmdline(pid))
        if any(m in cmd for m in marks):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def _wait_gone(procs: list[tuple[int, int]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(_same_alive(p, s) for p, s in procs):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _stop_popen(proc: subprocess.Popen, sig: int, timeout: float) -> None:
    """Send sig to our child, wait up to timeout, then SIGKILL and wait again."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)


# --------------------------------------------------------------------------- OAuth 2.0 tokens


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

    def issue(self, user: str, *, lifetime: float = 3600.0, token: str | None = None) -> str:
        """A new access token for user, valid for `lifetime` seconds."""
        token = token or "at-" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = {"user": user, "exp": time.time() + lifetime, "revoked": False}
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


def xoauth2_payload(user: str, token: str) -> bytes:
    """The XOAUTH2 initial client response (before base64), as Google and Microsoft define it."""
    return f"user={user}\1auth=Bearer {token}\1\1".encode()


def oauthbearer_payload(user: str, token: str) -> bytes:
    """The OAUTHBEARER initial client response (RFC 7628, before base64)."""
    return f"n,a={user},\1auth=Bearer {token}\1\1".encode()


# --------------------------------------------------------------------------- Dovecot


def skip_reason() -> str | None:
    """Why a private Dovecot can't run here, or None when it can."""
    if _find("dovecot") is None or _find("doveconf") is None:
        return (
            "dovecot not installed: run `make test` (installs dovecot-imapd) "
            "or apt-get install dovecot-imapd"
        )
    if _find("openssl") is None:
        return "openssl not installed (needed for the test certificate): apt-get install openssl"
    if os.geteuid() != 0:
        return "a private Dovecot needs root (its master starts as root, mail runs as nobody)"
    if not Path("/proc/self/stat").exists():
        return "needs Linux /proc to manage the Dovecot processes"
    return None


def _world_traversable(path: Path) -> bool:
    for p in (path, *path.parents):
        try:
            if not p.stat().st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def _short_tempdir() -> Path:
    for cand in (tempfile.gettempdir(), "/tmp", "/var/tmp"):
        p = Path(cand)
        if p.is_dir() and _world_traversable(p) and len(str(p)) < _MAX_ROOT_LEN - 25:
            return p
    raise RuntimeError("no world-traversable temporary folder with a short path")


_PRIVATE_PREFIX = "triage-dovecot-"


def _owner_mark() -> str:
    st = _proc_stat(os.getpid())
    return f"{os.getpid()} {st[2] if st else 0}"


def _sweep_orphans(tempdir: Path) -> None:
    """Remove private instance folders left by processes that died without cleanup() (e.g.
    SIGKILLed test runs): the process that made the folder is gone and its master isn't running.
    A folder whose master still runs is left alone."""
    for d in tempdir.glob(_PRIVATE_PREFIX + "*"):
        with contextlib.suppress(OSError, ValueError):
            master = int((d / "run" / "master.pid").read_text().split()[0])
            st = _proc_stat(master)
            if st and st[0] != "Z" and str(d / "dovecot.conf") in _cmdline(master):
                continue  # running
        try:
            pid, start = (int(x) for x in (d / "owner").read_text().split())
        except (OSError, ValueError):
            with contextlib.suppress(OSError):  # no owner: being created, or an old layout
                if time.time() - d.stat().st_mtime > 600:
                    shutil.rmtree(d, ignore_errors=True)
            continue
        if not _same_alive(pid, start):
            shutil.rmtree(d, ignore_errors=True)


# Instances started by this process: stopped (and private folders removed) at exit, so a
# caller that only calls stop(), or none, leaves no server and no folder behind.
_STARTED: list[Dovecot] = []


@atexit.register
def _cleanup_at_exit() -> None:
    for dc in list(_STARTED):
        with contextlib.suppress(Exception):
            dc.cleanup()


def _mail_ids() -> tuple[int, int]:
    try:
        uid = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        uid = 65534
    for group in ("nogroup", "nobody"):
        try:
            return uid, grp.getgrnam(group).gr_gid
        except KeyError:
            continue
    return uid, 65534


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
        `auth_socket` (a private Postfix checks SMTP AUTH against these users there)."""
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
        if _world_traversable(tmp) and len(str(tmp)) < _MAX_ROOT_LEN - 20:
            root, link = Path(tempfile.mkdtemp(prefix="dovecot-", dir=tmp)), None
        else:
            shared = _short_tempdir()
            _sweep_orphans(shared)
            root = Path(tempfile.mkdtemp(prefix=_PRIVATE_PREFIX, dir=shared))
            (root / "owner").write_text(_owner_mark())
            link = tmp / root.name
            link.symlink_to(root, target_is_directory=True)
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
                )
                dc._prepare()
                try:
                    dc._spawn(timeout)
                    _STARTED.append(dc)
                    return dc
                except _PortTaken:
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

    def _prepare(self) -> None:
        root = self.root
        uid, gid = _mail_ids()
        for d in (self.maildir_root, self.home_root):
            d.mkdir(exist_ok=True)
            os.chown(d, uid, gid)
            os.chmod(d, 0o755)
        for user in self.users:
            home = self.home_root / user
            home.mkdir(exist_ok=True)
            os.chown(home, uid, gid)
        passwd = root / "passwd"
        passwd.write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.users.items()))
        os.chmod(passwd, 0o644)  # read by the auth process (user dovecot)
        if self.tls and self.ca_file is None:
            cert, _key = make_cert(root, "imap")
            self.ca_file = cert
        lines = [
            "# Private test instance written by tests/servers.py",
            f"instance_name = {self.instance_name}",
            f"base_dir = {self.base_dir}",
            f"state_dir = {self.state_dir}",
            f"log_path = {self.log_path}",
            f"info_log_path = {self.log_path}",
            "protocols = imap",
            "listen = 127.0.0.1",
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain login" + (" xoauth2 oauthbearer" if self.tokens else ""),
            # a failed login is answered in about 0.5 s (Dovecot's default delay is 2 s)
            "auth_failure_delay = 0",
            "first_valid_uid = 1",
            f"mail_location = maildir:{self.maildir_root}/%u",
            "mail_fsync = never",
            # IDLE: Dovecot notices changes by inotify; this is the fallback poll
            "mailbox_idle_check_interval = 1 secs",
            "passdb {",
            "  driver = passwd-file",
            f"  args = scheme=PLAIN {passwd}",
            *(["  mechanisms = plain login"] if self.tokens else []),
            "}",
            *self._oauth2_passdb(),
            "userdb {",
            "  driver = static",
            f"  args = uid={uid} gid={gid} home={self.home_root}/%u",
            "}",
            *(
                ["service auth {", "  unix_listener auth-relay {", "    mode = 0666", "  }", "}"]
                if self.auth_socket
                else []
            ),
            "protocol imap {",
            "  mail_max_userip_connections = 50",
            "}",
            *self._namespace(),
            "service imap-login {",
            "  inet_listener imap {",
            "    address = 127.0.0.1",
            f"    port = {self.port}",
            "  }",
            "  inet_listener imaps {",
            "    address = 127.0.0.1",
            f"    port = {self.tls_port or 0}",
            "    ssl = yes",
            "  }",
            "}",
        ]
        if self.tls:
            lines += ["ssl = yes", f"ssl_cert = <{self.ca_file}", f"ssl_key = <{root / 'imap.key'}"]
        else:
            lines += ["ssl = no"]
        self.config_path.write_text("\n".join(lines) + "\n")
        check = subprocess.run(
            [_find("doveconf") or "doveconf", "-c", str(self.config_path), "-n"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if check.returncode != 0:
            raise RuntimeError(f"doveconf rejected {self.config_path}:\n{check.stderr}")

    def _namespace(self) -> list[str]:
        """The inbox namespace's lines for dovecot.conf when it has a prefix (Maildir++: ".")."""
        if not self.namespace_prefix:
            return []
        return [
            "namespace inbox {",
            "  inbox = yes",
            f"  prefix = {self.namespace_prefix}",
            "  separator = .",
            "}",
        ]

    def _oauth2_passdb(self) -> list[str]:
        """With tokens: the oauth2 passdb's lines for dovecot.conf, after writing its args file.

        Without tokeninfo_url Dovecot goes straight to introspection; it POSTs token=... and
        accepts the token when the JSON answer has active = true and a username equal to the
        login name (username_format %Lu: lower-cased). `mechanisms` keeps each passdb to its
        own mechanisms: a token is never tried as a password, nor a password as a token."""
        if self.tokens is None:
            return []
        args = self.root / "oauth2.conf.ext"
        args.write_text(
            "\n".join(
                [
                    "# OAuth 2.0 passdb of a private test instance (tests/servers.py)",
                    "introspection_mode = post",
                    f"introspection_url = {self.tokens.url}",
                    "username_attribute = username",
                    "active_attribute = active",
                    "active_value = true",
                    "timeout_msecs = 5000",
                ]
            )
            + "\n"
        )
        # Dovecot's per-IP auth penalty grows with each refused token (a refused password
        # counts once per password): 2, 4, 8, then 15 s before every later login from
        # 127.0.0.1. A first passdb that only adds nodelay=yes for 127.0.0.1 (the recipe in
        # Dovecot's 2.3 upgrade notes) answers a refused token at once and leaves the penalty
        # alone, so a client retrying a dead token sees the same answer each time.
        nodelay = self.root / "oauth2-nodelay"
        nodelay.write_text(f"{HOST}:::::::nodelay=yes\n")
        for path in (args, nodelay):
            os.chmod(path, 0o644)  # read by the auth process (user dovecot)
        return [
            "passdb {",
            "  driver = passwd-file",
            f"  args = username_format=%{{rip}} {nodelay}",
            "  default_fields = noauthenticate=y",
            "  mechanisms = xoauth2 oauthbearer",
            "}",
            "passdb {",
            "  driver = oauth2",
            "  mechanisms = xoauth2 oauthbearer",
            f"  args = {args}",
            "}",
        ]

    def _spawn(self, timeout: float) -> None:
        (self.base_dir / "master.pid").unlink(missing_ok=True)
        start = self.stdout_path.stat().st_size if self.stdout_path.exists() else 0
        with self.stdout_path.open("ab") as out:
            self._proc = subprocess.Popen(
                [_find("dovecot") or "dovecot", "-F", "-c", str(self.config_path)],
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
                    raise _PortTaken(text)
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
        argv = _cmdline(pid)
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
            seen = set(_descendants(pid))
            proc.send_signal(signal.SIGTERM)
            now = time.monotonic()
            deadline, nudge, escalate = now + timeout, now + 0.5, now + 2.0
            told: set[tuple[int, int]] = set()
            while proc.poll() is None and time.monotonic() < deadline:
                live = [p for p in _descendants(pid) if _same_alive(*p)]
                seen.update(live)
                titles = {p: (_cmdline(p[0])[:1] or [""])[0] for p in live}
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
                _signal_procs(fresh, sig, self._marks())
                told.update(targets)
                time.sleep(0.005)
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            # the log process and any sessions the master left behind (now children of init)
            leftover = list(seen)
            _signal_procs(leftover, signal.SIGTERM, self._marks())
            if not _wait_gone(leftover, 5.0):
                _signal_procs(leftover, signal.SIGKILL, self._marks())
                _wait_gone(leftover, 5.0)
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
        procs = _descendants(pid)
        self._proc.kill()
        self._proc.wait(10)
        if sessions:
            _signal_procs(procs, signal.SIGKILL, self._marks())
            _wait_gone(procs, 5.0)
        self._proc = None
        (self.base_dir / "master.pid").unlink(missing_ok=True)

    def restart(self, timeout: float = 15.0) -> None:
        """Stop (if running) and start again with the same config, ports and maildir."""
        self.stop()
        try:
            self._spawn(timeout)
        except _PortTaken as exc:
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
            [_find("doveadm") or "doveadm", "-c", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if res.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed: {res.stderr.strip()}")
        return res.stdout

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


class _PortTaken(RuntimeError):
    pass


# --------------------------------------------------------------------------- IMAP helpers
# Synchronous, stdlib imaplib, one short session per call over the plain port. Folder names are
# ASCII; this Dovecot (Maildir++ layout) separates levels with "." ("Triage.Done"), and rejects
# "/" in names. Message bytes come back as IMAP serves them (CRLF line ends).


def connect(
    dovecot: Dovecot, user: str = "support", *, tls: bool = False, timeout: float = 10.0
) -> imaplib.IMAP4:
    """A logged-in imaplib client: plain port, or imaps (verified against ca_file) with tls."""
    if tls:
        if dovecot.tls_port is None or dovecot.ca_file is None:
            raise ValueError("this Dovecot was started with tls=False")
        ctx = client_ssl_context(dovecot.ca_file)
        m: imaplib.IMAP4 = imaplib.IMAP4_SSL(
            dovecot.host, dovecot.tls_port, ssl_context=ctx, timeout=timeout
        )
    else:
        assert dovecot.port is not None
        m = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=timeout)
    try:
        m.login(user, dovecot.users[user])
    except BaseException:
        with contextlib.suppress(Exception):
            m.shutdown()
        raise
    return m


@contextlib.contextmanager
def session(dovecot: Dovecot, user: str = "support") -> Iterator[imaplib.IMAP4]:
    """`with session(dc, "support") as m:` a logged-in imaplib client, logged out afterwards."""
    m = connect(dovecot, user)
    try:
        yield m
    finally:
        with contextlib.suppress(Exception):
            m.logout()


_session = session  # older name, used by tests/test_daemon.py


def _mbox(name: str) -> str:
    if not name.isascii():
        raise ValueError(f"folder names must be ASCII here (modified UTF-7 not done): {name!r}")
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ok(typ: str, data: list, what: str) -> None:
    if typ != "OK":
        raise RuntimeError(f"IMAP {what} failed: {typ} {data!r}")


def create(dovecot: Dovecot, user: str, folder: str) -> None:
    """Create a folder (no error if it exists)."""
    with session(dovecot, user) as m:
        typ, data = m.create(_mbox(folder))
        if typ != "OK" and b"ALREADYEXISTS" not in b" ".join(data):
            _ok(typ, data, f"CREATE {folder}")


def append(
    dovecot: Dovecot,
    user: str,
    folder: str,
    raw: bytes,
    flags: str = "",
    *,
    date_time: object = None,
    create_folder: bool = True,
) -> int:
    """APPEND raw to folder (created when missing) with flags like "\\Seen \\Flagged".
    date_time: anything imaplib.Time2Internaldate takes. Returns the new UID (APPENDUID).
    Note imaplib turns bare LF line ends into CRLF."""
    with session(dovecot, user) as m:
        flag_arg = f"({flags.strip('()')})" if flags else None
        typ, data = m.append(_mbox(folder), flag_arg, date_time, raw)
        if typ != "OK" and create_folder and b"TRYCREATE" in b" ".join(data):
            _ok(*m.create(_mbox(folder)), f"CREATE {folder}")
            typ, data = m.append(_mbox(folder), flag_arg, date_time, raw)
        _ok(typ, data, f"APPEND to {folder}")
        found = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
        if not found:
            raise RuntimeError(f"no APPENDUID in {data!r}")
        return int(found.group(1))


def _status(m: imaplib.IMAP4, folder: str, item: str) -> int | None:
    typ, data = m.status(_mbox(folder), f"({item})")
    if typ != "OK":
        return None
    found = re.search(rb"\b" + item.encode() + rb" (\d+)", data[0] or b"")
    if not found:
        raise RuntimeError(f"no {item} in {data!r}")
    return int(found.group(1))


def count(dovecot: Dovecot, user: str, folder: str) -> int:
    """Messages in folder; 0 when the folder doesn't exist."""
    with session(dovecot, user) as m:
        return _status(m, folder, "MESSAGES") or 0


def uidvalidity(dovecot: Dovecot, user: str, folder: str) -> int:
    with session(dovecot, user) as m:
        value = _status(m, folder, "UIDVALIDITY")
    if value is None:
        raise LookupError(f"no folder {folder!r} for {user}")
    return value


def _fetch(m: imaplib.IMAP4, items: str) -> list[tuple[bytes, bytes | None]]:
    """UID FETCH 1:* items on the selected folder: [(response head, literal or None)]."""
    typ, data = m.uid("FETCH", "1:*", items)
    _ok(typ, data, f"UID FETCH {items}")
    out: list[tuple[bytes, bytes | None]] = []
    for part in data:
        if isinstance(part, tuple):
            out.append((part[0], part[1]))
        elif part and part != b")" and re.match(rb"\d+ \(", part):
            out.append((part, None))
    return out


def _uid_of(head: bytes) -> int:
    found = re.search(rb"\bUID (\d+)", head)
    if not found:
        raise RuntimeError(f"no UID in {head!r}")
    return int(found.group(1))


def uids(dovecot: Dovecot, user: str, folder: str) -> list[int]:
    """UIDs in folder, ascending; [] when the folder doesn't exist."""
    with session(dovecot, user) as m:
        typ, _ = m.select(_mbox(folder), readonly=True)
        if typ != "OK":
            return []
        typ, data = m.uid("SEARCH", "ALL")
        _ok(typ, data, "UID SEARCH")
        return sorted(int(x) for x in (data[0] or b"").split())


def fetch_all(dovecot: Dovecot, user: str, folder: str) -> list[bytes]:
    """Every message's bytes (BODY.PEEK[], so \\Seen is left alone), in UID order."""
    with session(dovecot, user) as m:
        typ, _ = m.select(_mbox(folder), readonly=True)
        if typ != "OK":
            return []
        got = [(_uid_of(h), body) for h, body in _fetch(m, "(UID BODY.PEEK[])") if body is not None]
        return [body for _, body in sorted(got)]


def flags(dovecot: Dovecot, user: str, folder: str) -> dict[int, set[str]]:
    """{uid: {flag, ...}} for every message in folder."""
    with session(dovecot, user) as m:
        typ, _ = m.select(_mbox(folder), readonly=True)
        if typ != "OK":
            return {}
        out: dict[int, set[str]] = {}
        for head, _body in _fetch(m, "(UID FLAGS)"):
            found = re.search(rb"FLAGS \(([^)]*)\)", head)
            out[_uid_of(head)] = set(found.group(1).decode().split()) if found else set()
        return out


_LIST = re.compile(rb'\((?P<attrs>[^)]*)\) (?P<delim>"(?:[^"\\]|\\.)*"|NIL) (?P<name>.*)$')


def folders(dovecot: Dovecot, user: str) -> list[str]:
    """Every folder name (as the server spells it), sorted."""
    with session(dovecot, user) as m:
        typ, data = m.list('""', "*")
        _ok(typ, data, "LIST")
    names = []
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):  # name sent as a literal
            names.append(item[1].decode())
            continue
        found = _LIST.match(item)
        if not found:
            raise RuntimeError(f"unexpected LIST line {item!r}")
        name = found.group("name")
        if name.startswith(b'"'):
            name = re.sub(rb"\\(.)", rb"\1", name[1:-1])
        names.append(name.decode())
    return sorted(names)


def reset_uidvalidity(
    dovecot: Dovecot, user: str, folder: str, *, renumber: bool = False
) -> tuple[int, int]:
    """Make the server change folder's UIDVALIDITY; returns (old, new).

    Works online, on any folder including INBOX (which IMAP can't DELETE): it runs
    `doveadm mailbox update --uid-validity old+1` against this instance. The messages stay; an
    IMAP session that has the folder selected is then disconnected by Dovecot ("* BYE IMAP session
    state is inconsistent, please relogin."), as a real server does when a mailbox is rebuilt.
    By default UIDs are kept. renumber=True first expunges and re-appends every message (same
    bytes, flags and internal date), so each also gets a new, higher UID."""
    old = uidvalidity(dovecot, user, folder)
    if renumber:
        with session(dovecot, user) as m:
            _ok(*m.select(_mbox(folder)), f"SELECT {folder}")
            saved = []
            for head, body in _fetch(m, "(UID FLAGS INTERNALDATE BODY.PEEK[])"):
                if body is None:
                    continue
                fl = re.search(rb"FLAGS \(([^)]*)\)", head)
                date = re.search(rb'INTERNALDATE ("[^"]*")', head)
                kept = [f for f in (fl.group(1).decode().split() if fl else []) if f != "\\Recent"]
                saved.append((_uid_of(head), kept, date.group(1).decode() if date else None, body))
            if saved:
                _ok(*m.uid("STORE", "1:*", "+FLAGS.SILENT", "(\\Deleted)"), "STORE \\Deleted")
                _ok(*m.expunge(), "EXPUNGE")
            for _uid, kept, date, body in sorted(saved, key=lambda s: s[0]):
                flag_arg = f"({' '.join(kept)})" if kept else None
                _ok(*m.append(_mbox(folder), flag_arg, date, body), f"APPEND to {folder}")
    new = old + 1 if old + 1 < 2**32 else 1
    dovecot.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(new), folder)
    now = uidvalidity(dovecot, user, folder)
    if now != new:
        raise RuntimeError(f"UIDVALIDITY of {folder} is {now} after setting {new}")
    return old, new


# --------------------------------------------------------------------------- SMTP sink


def smtp_skip_reason() -> str | None:
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
                [sys.executable, str(Path(__file__).resolve()), "smtp-sink", str(self.folder)],
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
            _stop_popen(self._proc, signal.SIGTERM, timeout)
            self._proc = None

    def kill(self) -> None:
        if self._proc is not None:
            _stop_popen(self._proc, signal.SIGKILL, 10)
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


def _smtp_sink_main(folder: Path) -> None:
    """The child process: serve SMTP until SIGTERM/SIGINT."""
    import asyncio

    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

    config = json.loads((folder / "sink.json").read_text())
    reply_code = config.get("reply_code")
    auth = config.get("auth")

    class Handler:
        def __init__(self) -> None:
            self.n = 0

        async def handle_DATA(self, server, session, envelope) -> str:
            self.n += 1
            refused = reply_code is not None
            target = folder / ("refused" if refused else "messages")
            record = {
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "helo": session.host_name,
                "tls": session.ssl is not None,
                "authenticated": bool(session.authenticated),
            }
            data = envelope.original_content or b""
            for suffix, payload in ((".eml", data), (".json", json.dumps(record).encode())):
                tmp = target / f".{self.n}{suffix}.tmp"
                tmp.write_bytes(payload)
                os.replace(tmp, target / f"{self.n}{suffix}")  # .json last: marks it complete
            if refused:
                if reply_code >= 500:
                    return f"{reply_code} 5.7.1 Refused by the test sink"
                return f"{reply_code} 4.3.0 Try again later (test sink)"
            return f"250 2.0.0 OK queued as {self.n}"

    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth is not None
            and auth_data.login == auth[0].encode()
            and auth_data.password == auth[1].encode()
        )
        return AuthResult(success=ok, handled=False)

    tls_context = None
    if config.get("cert"):
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(config["cert"], config["key"])

    handler = Handler()
    kwargs = {
        "hostname": "localhost",  # no DNS lookup of the machine's name
        "decode_data": False,
        "enable_SMTPUTF8": config.get("smtputf8", True),
        "tls_context": tls_context,
        "require_starttls": tls_context is not None,
        "auth_required": auth is not None,
        "auth_require_tls": tls_context is not None,
        "authenticator": authenticator if auth is not None else None,
    }

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, int(config.get("port") or 0)))
        server = await loop.create_server(lambda: SMTP(handler, **kwargs), sock=sock)
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        tmp = folder / ".port.tmp"
        tmp.write_text(str(sock.getsockname()[1]))
        os.replace(tmp, folder / "port")
        parent = os.getppid()
        while not done.is_set():  # also end if the process that started us is gone
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.5)
            if os.getppid() != parent:
                break
        server.close()

    asyncio.run(serve())


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "smtp-sink":
        _smtp_sink_main(Path(sys.argv[2]))
    else:
        sys.exit("usage: servers.py smtp-sink FOLDER")
