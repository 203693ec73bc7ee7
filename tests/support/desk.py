"""A demo database for the desk's tests: the fixtures replayed, one ticket breached.

    from tests.support.desk import demo_db, Demo
    demo = demo_db(tmp_path)            # Demo(path, now, breached)
    with web_server(demo.path) as url:  # `triage web` in its own process on a free port
        ...

The contacts are imported (the store makes the full-text index as it creates the file), then
fixture 12 (a P1 on a 24x7 premium plan: due an hour after it arrives) is replayed three
hours before `now` and every other fixture at `now`: exactly that ticket is breached, and it
is T-000001. Runs the real command line, as `make demo` does.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures" / "emails"
BREACHED_FIXTURE = "12-severity1-subject.eml"


@dataclass(frozen=True)
class Demo:
    path: Path
    now: datetime  # when the other fixtures arrived
    breached: str  # the one breached ticket's number


def triage(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "triage.cli", "--log-level", "warning", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"triage {args} exited {done.returncode}\n{done.stderr}"
    return done


def iso(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def demo_db(folder: Path, now: datetime | None = None, search: bool = True) -> Demo:
    """Replay the fixtures into `folder`/triage.db (see the module's docstring)."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    db = folder / "triage.db"
    triage("contacts", "import", "--db", db, ROOT / "fixtures" / "contacts.csv", cwd=folder)
    early = folder / "early"
    early.mkdir()
    (early / BREACHED_FIXTURE).write_bytes((FIXTURES / BREACHED_FIXTURE).read_bytes())
    rest = folder / "rest"
    rest.mkdir()
    for eml in sorted(FIXTURES.glob("*.eml")):
        if eml.name != BREACHED_FIXTURE:
            (rest / eml.name).write_bytes(eml.read_bytes())
    for when, where in ((now - timedelta(hours=3), early), (now, rest)):
        triage("replay", "--db", db, "--now", iso(when), "--workers", "1", where, cwd=folder)
    if not search:  # as a database no release with the index has opened yet
        conn = sqlite3.connect(db, isolation_level=None)
        try:
            for trigger in ("messages_fts_ad", "messages_fts_au"):
                conn.execute(f"DROP TRIGGER {trigger}")
            conn.execute("DROP TABLE messages_fts")
        finally:
            conn.close()
    return Demo(db, now, "T-000001")


@contextlib.contextmanager
def web_server(db: Path, base_url: str = "/", *options: str) -> Iterator[str]:
    """`triage web` on a free loopback port in its own process; yields the page's root URL
    and stops that process (by its pid, SIGTERM) on exit. `options`: more of the command's
    options (--config FILE)."""
    from tests.servers import HOST, free_port, wait_for_port

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "triage.cli",
            "--log-level",
            "warning",
            "web",
            "--db",
            str(db),
            "--listen",
            f"{HOST}:{port}",
            "--base-url",
            base_url,
            *options,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        try:
            wait_for_port(HOST, port, timeout=60)
        except TimeoutError:
            proc.kill()
            raise AssertionError(f"the page did not start: {proc.communicate()[1]}") from None
        yield f"http://{HOST}:{port}{base_url}"
    finally:
        if proc.poll() is None:
            proc.terminate()  # this pid only; uvicorn stops on SIGTERM
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        proc.communicate()
