"""A private PostgreSQL (Debian's `postgresql` package) for the store's tests and benches.

    from tests.support.postgres import Postgres

    with Postgres.start(tmp) as pg:
        url = pg.create_database("one")  # postgresql://triage@127.0.0.1:PORT/one
        ...

Its own data directory (initdb) and unix socket folder in a private folder under the system
temporary folder, listening on a free 127.0.0.1 port, stopped by its pid: the system's
cluster (/etc/postgresql, /var/lib/postgresql) is never read, written or signalled.

initdb and postgres refuse to run as root: as root they run as the unprivileged user
`postgres` (created by Debian's package) through setpriv, which execs in place, so the
pid of the child is the postmaster's. The superuser is `triage` with the password
`PASSWORD`; connections over TCP need it (scram-sha-256), as a deployed server would.
Durability is switched off (fsync, synchronous_commit): a test's data is thrown away.
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
from tests.support.net import HOST, free_port, wait_for_port

BIN = Path("/usr/lib/postgresql/15/bin")
USER = "triage"
PASSWORD = "pg-test-secret"


def _bin_dir() -> Path | None:
    """Debian's PostgreSQL server programs (the newest major version installed)."""
    if (BIN / "postgres").is_file():
        return BIN
    root = Path("/usr/lib/postgresql")
    found = sorted(root.glob("*/bin/postgres"), key=lambda p: p.parent.parent.name)
    return found[-1].parent if found else None


def skip_reason() -> str | None:
    """Why a private PostgreSQL can't run here, or None when it can."""
    if _bin_dir() is None:
        return (
            "postgresql not installed: run `make test` (installs postgresql) or"
            " apt-get install postgresql"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install -e '.[test]'"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "the postgres user is missing (created by Debian's postgresql package)"
    return None


_STARTED: list[Postgres] = procs.stopped_at_exit("stop")


class Postgres:
    """A private PostgreSQL server. Create with `Postgres.start(tmpdir)`."""

    host = HOST

    def __init__(self, root: Path, link: Path | None) -> None:
        self.root = root
        self.link = link
        self.data_dir = root / "data"
        self.socket_dir = root / "socket"
        self.log_path = root / "postgres.log"
        self.port = 0
        self._proc: subprocess.Popen | None = None
        self._databases = 0

    @classmethod
    def start(cls, tmpdir: str | os.PathLike[str] | None = None, timeout: float = 30.0) -> Postgres:
        """Start a server; `tmpdir` gets a symlink to its folder (and its log when stopped)."""
        reason = skip_reason()
        if reason:
            raise RuntimeError(reason)
        root = Path(tempfile.mkdtemp(prefix="triage-postgres-", dir=tempfile.gettempdir()))
        link = None
        if tmpdir is not None:
            link = Path(tmpdir).resolve() / root.name
            link.symlink_to(root, target_is_directory=True)
        pg = cls(root, link)
        try:
            pg._prepare()
            pg._spawn(timeout)
        except BaseException:
            pg.stop()
            raise
        _STARTED.append(pg)
        return pg

    def _as_owner(self, server: bool = False) -> list[str]:
        """The prefix that runs a program as the unprivileged owner (nothing when not root);
        the `server` shuts down fast when the test process dies without stopping it."""
        if os.geteuid() != 0:
            return []
        death = ["--pdeathsig=SIGINT"] if server else []
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *death, "--"]

    def _prepare(self) -> None:
        bindir = _bin_dir()
        assert bindir is not None
        self.socket_dir.mkdir(mode=0o700)
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for p in (self.root, self.socket_dir, pwfile):
                os.chown(p, owner.pw_uid, owner.pw_gid)
        done = subprocess.run(
            [
                *self._as_owner(),
                str(bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                USER,
                "--pwfile",
                str(pwfile),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.root,
        )
        pwfile.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        self.port = free_port()

    def _spawn(self, timeout: float) -> None:
        bindir = _bin_dir()
        assert bindir is not None
        settings = {
            "listen_addresses": HOST,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            "max_connections": "40",
            "logging_collector": "off",
        }
        args = [*self._as_owner(server=True), str(bindir / "postgres"), "-D", str(self.data_dir)]
        for name, value in settings.items():
            args += ["-c", f"{name}={value}"]
        with open(self.log_path, "ab") as log:
            if os.geteuid() == 0:
                owner = pwd.getpwnam("postgres")
                os.chown(self.log_path, owner.pw_uid, owner.pw_gid)
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                close_fds=True,
                cwd=self.root,
                start_new_session=True,  # a Ctrl-C to the tests is not a fast shutdown to it
            )
        deadline = time.monotonic() + timeout
        wait_for_port(HOST, self.port, timeout)
        import psycopg

        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited at start:\n{self.log_text()}")
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=5):
                    return
            except psycopg.OperationalError:  # "the database system is starting up"
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"postgres not ready after {timeout}s:\n{self.log_text()}"
                    ) from None
                time.sleep(0.05)

    def url(self, database: str, password: bool = True) -> str:
        """A libpq URL for `database`; without `password`, one a config may hold."""
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{USER}{secret}@{HOST}:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database (named, or the next `t<N>`); its URL without the password."""
        import psycopg
        from psycopg import sql

        self._databases += 1
        name = name or f"t{self._databases}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name, password=False)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGINT (fast shutdown: clients cut, no checkpoint wait), SIGKILL after `timeout`,
        then any backend it left; then remove the folder, keeping the log beside the link."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            children = procs.descendants(proc.pid)
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            if not procs.wait_gone(children, 5):
                for pid, start in children:
                    if procs.alive(pid, start):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ValueError):
            _STARTED.remove(self)
        if self.root.exists():
            if self.link is not None:
                with contextlib.suppress(OSError):
                    self.link.with_suffix(".log").write_text(self.log_text())
                self.link.unlink(missing_ok=True)
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Postgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
