"""`triage run` as a subprocess, for tests and bench scripts: the one harness.

    d = Daemon(tmp, dovecot, daemon={"outbox_seconds": 1}).start()
    wait_for(lambda: d.scalar("SELECT COUNT(*) FROM tickets") == 3, 30, "three tickets")
    assert d.stop() == 0

A Daemon writes its configuration into `tmp` (a [[mailbox]] on a private IMAP server over
imaps, the [daemon] settings, any `extra` tables), starts `triage run` from a checkout with
this interpreter, reads its JSON-lines log and its database, and stops it by its pid. Started
in its own session it can be signalled as a group, and what it leaves behind is found by the
session id even after it died: what systemd's control group is to the service.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.support import imap, procs

REPO = Path(__file__).resolve().parents[2]

# Short waits so that tests see failures and recoveries in seconds; quick=False leaves the
# shipped defaults (what a benchmark measures).
QUICK_MAILBOX = {"poll_seconds": 1, "timeout": 5}
QUICK_DAEMON = {
    "message_timeout": 5,
    "alert_after_failures": 2,
    "backoff_max_seconds": 2,
    "sla_check_seconds": 60,
}


def toml_lines(values: dict) -> str:
    """`key = value` lines of a TOML table (a None value leaves the key out)."""
    return "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items() if v is not None)


def run_daemon(
    config: Path, log: Path, *, checkout: Path = REPO, **popen: object
) -> subprocess.Popen:
    """`triage run --config CONFIG` from `checkout`, its output appended to `log`.

    NOTIFY_SOCKET is dropped from the environment unless `env` is given: a daemon under
    test must not talk to the systemd that runs the tests.
    """
    env = popen.pop("env", None)
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "triage.cli", "run", "--config", str(config)],
            cwd=checkout,
            env={**env, "PYTHONPATH": str(checkout)},
            stdin=subprocess.DEVNULL,
            stdout=popen.pop("stdout", subprocess.DEVNULL),
            stderr=err,
            **popen,
        )


def log_events(path: str | os.PathLike[str], event: str | None = None) -> list[dict]:
    """The JSON objects in a JSON-lines log (structlog output), in order; only those whose
    "event" is `event` when given. Lines that are not JSON objects (tracebacks, a line cut
    short by a kill) are skipped, and a log that does not exist (yet) reads as empty."""
    out = []
    with contextlib.suppress(OSError):
        for line in Path(path).read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
    if event is not None:
        out = [e for e in out if e.get("event") == event]
    return out


def wait_for(predicate: Callable[[], object], timeout: float = 15, what: str = "condition") -> None:
    """Poll `predicate` every 50 ms until it is true; AssertionError naming `what` after
    `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def mailbox_tables(
    tmp: Path, server: imap.Server, users: list[str], *, quick: bool = True, **keys: object
) -> str:
    """`[[mailbox]]` tables, one per user of `server` (over imaps, each named for its user,
    each with its own password file in `tmp`): the `extra` of a Daemon that watches many.
    `keys` replace the defaults of every table (a None value leaves the key out)."""
    tmp.mkdir(parents=True, exist_ok=True)
    return "\n".join(
        mailbox_table(server, user, server.users[user], tmp / f"pw-{user}", quick, keys)
        for user in users
    )


def mailbox_table(
    server: imap.Server, user: str, secret: str, pw: Path, quick: bool, keys: dict
) -> str:
    """One `[[mailbox]]` table for `user` of `server` over imaps, its password written to
    `pw`; `keys` replace the defaults (a None value leaves the key out)."""
    pw.write_text(f"{secret}\n")
    pw.chmod(0o600)  # as `triage check` wants a password file
    table = {
        "name": user,
        "host": server.host,
        "port": server.tls_port,
        "tls": "tls",
        "username": user,
        "password_file": str(pw),
        "ca_file": str(server.ca_file),
        **(QUICK_MAILBOX if quick else {}),
        **keys,
    }
    return f"[[mailbox]]\n{toml_lines(table)}\n"


class Database:
    """A daemon's database, read-only, looked at while it runs.

    One connection is kept (cheap enough to poll every millisecond) and opened again when
    the file is replaced. Nothing is read while the file does not exist, and a query on a
    schema not made yet reads as no rows.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None

    def _connection(self) -> sqlite3.Connection | None:
        try:
            st = os.stat(self.path)
        except OSError:
            self.close()
            return None
        if self._conn is None or self._file != (st.st_dev, st.st_ino):
            self.close()
            self._conn = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, timeout=10, check_same_thread=False
            )
            self._file = (st.st_dev, st.st_ino)
        return self._conn

    def rows(self, sql: str, *args: object) -> list[tuple]:
        conn = self._connection()
        if conn is None:
            return []
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError:  # the schema is not made yet
            return []

    def scalar(self, sql: str, *args: object, default: object = 0) -> object:
        """The first column of the first row, or `default` when there is none."""
        found = self.rows(sql, *args)
        return found[0][0] if found else default

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class SharedDatabase(Database):
    """A daemon's PostgreSQL store (`[store] url`), read as Database reads SQLite's file:
    the same `?` placeholders; a query before the schema exists reads as no rows."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn = None

    def rows(self, sql: str, *args: object) -> list[tuple]:
        import psycopg

        from tests.support.postgres import PASSWORD

        if self._conn is None:
            self._conn = psycopg.connect(self.url, password=PASSWORD, autocommit=True)
        try:
            return self._conn.execute(sql.replace("%", "%%").replace("?", "%s"), args).fetchall()
        except psycopg.errors.UndefinedTable:
            return []


class Daemon:
    """`triage run` in a subprocess, with its config, database and log in `tmp`.

    server: the private IMAP server (Dovecot, Cyrus) its one mailbox reads over imaps, or
    None for a daemon with no mailbox (it only drains the outbox). mailbox and daemon:
    keys that replace the [[mailbox]] and [daemon] defaults (None removes one); extra: TOML
    tables added as they are ([identity], [smtp], [rules] ...). quick=False starts from the
    shipped defaults instead of short test timeouts. store_url: a PostgreSQL database (its password
    tests/support/postgres.PASSWORD) instead of the SQLite file, its files in `files`.
    """

    def __init__(
        self,
        tmp: Path,
        server: imap.Server | None = None,
        *,
        password: str | None = None,
        mailbox: dict | None = None,
        daemon: dict | None = None,
        extra: str = "",
        quick: bool = True,
        own_session: bool = False,
        checkout: Path = REPO,
        user: str = "support",
        store_url: str | None = None,
        files: Path | None = None,
    ) -> None:
        self.tmp, self.imap, self.user = tmp, server, user
        self.checkout, self.own_session = checkout, own_session
        tmp.mkdir(parents=True, exist_ok=True)
        self.db = tmp / "triage.db"
        self.log = tmp / "daemon.log"
        self.config = tmp / "triage.toml"
        text = f"[store]\ndb = {json.dumps(str(self.db))}\n{extra}\n"
        if store_url is not None:
            from tests.support.postgres import PASSWORD

            pw = tmp / "pg-password"
            pw.write_text(PASSWORD + "\n")
            pw.chmod(0o600)
            shared = {"url": store_url, "password_file": str(pw), "files": str(files or tmp)}
            text = f"[store]\n{toml_lines(shared)}\n{extra}\n"
        if server is not None:
            secret = password if password is not None else server.users.get(user, "secret")
            text += mailbox_table(server, user, secret, tmp / "pw", quick, mailbox or {})
        settings = {**(QUICK_DAEMON if quick else {}), **(daemon or {})}
        text += f"[daemon]\n{toml_lines(settings)}\n"
        self.config.write_text(text, encoding="utf-8")
        self.database = Database(self.db) if store_url is None else SharedDatabase(store_url)
        self.proc: subprocess.Popen | None = None

    # -- the process ---------------------------------------------------------------------

    def start(self, *, env: dict | None = None, **popen: object) -> Daemon:
        """Start `triage run` (again, after a stop or a kill); its log is appended to."""
        self.proc = run_daemon(
            self.config,
            self.log,
            checkout=self.checkout,
            env=env,
            start_new_session=self.own_session,
            **popen,
        )
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.running() else None  # type: ignore[union-attr]

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int, *, group: bool = False) -> None:
        """`sig` to the main process, or (group=True, own_session) to its whole process group."""
        assert self.proc is not None
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, as systemd stops it; its exit status, or None when it had to be killed
        after `timeout` seconds."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        """SIGKILL the main process only, as the OOM killer or `kill -9 $MAINPID` would."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait(timeout=10)

    def workers(self) -> list[tuple[int, int]]:
        """(pid, start time) of every process it started that still runs under it."""
        return procs.descendants(self.proc.pid) if self.running() else []  # type: ignore[union-attr]

    def left_behind(self) -> list[int]:
        """Live processes of its session running its command line, once it is gone: workers
        it left as orphans (own_session only; a session id is the main process's pid)."""
        assert self.own_session and self.proc is not None
        return procs.session_members(self.proc.pid, str(self.config))

    # -- what it wrote -------------------------------------------------------------------

    def events(self, event: str | None = None) -> list[dict]:
        return log_events(self.log, event)

    def logged(self, event: str) -> list[dict]:
        return log_events(self.log, event)

    def query(self, sql: str, *args: object) -> list[tuple]:
        return self.database.rows(sql, *args)

    def scalar(self, sql: str, *args: object) -> object:
        return self.database.scalar(sql, *args)

    def cli(self, *args: str, codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
        """`triage ARGS --config <this daemon's config>`, output captured; its exit code must be
        one of `codes` (status: 0 ok, 1 warning, 2 critical)."""
        done = subprocess.run(
            [sys.executable, "-m", "triage.cli", *args, "--config", str(self.config)],
            cwd=self.checkout,
            env={**os.environ, "PYTHONPATH": str(self.checkout)},
            capture_output=True,
            text=True,
        )
        assert done.returncode in codes, (done.returncode, done.stdout, done.stderr)
        return done

    # -- its mailbox ---------------------------------------------------------------------

    def count(self, folder: str) -> int:
        """Messages in `folder` of its mailbox ("Triage/Processed" as the server spells it)."""
        assert self.imap is not None
        return imap.count(self.imap, self.user, self.folder(folder))

    def folder(self, name: str) -> str:
        """`name` as this server spells it: Dovecot's Maildir++ levels are joined by "."."""
        assert self.imap is not None
        return (
            name.replace("/", ".")
            if "Triage.Processed" in imap.folders(self.imap, self.user)
            else name
        )


@contextlib.contextmanager
def killed_after(build: Callable[..., Daemon]) -> Iterator[Callable[..., Daemon]]:
    """`build` (which makes a Daemon), wrapped so every daemon it made and left running is
    killed at the end."""
    started: list[Daemon] = []

    def make(*args, **options) -> Daemon:
        started.append(build(*args, **options))
        return started[-1]

    try:
        yield make
    finally:
        for d in started:
            if d.running():
                d.kill()
            d.database.close()
