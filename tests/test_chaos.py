"""The chaos soak (bench/chaos.py) in its short mode, and the bugs it found, one test each."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.support import procs
from tests.support.daemon import Daemon, wait_for

from . import servers
from .conftest import ROOT, human, rules_with_slow_rule

pytestmark = pytest.mark.skipif(
    servers.skip_reason() is not None, reason=servers.skip_reason() or ""
)


def test_short_chaos_soak_passes():
    """200 messages; 5 SIGKILLs, a Dovecot crash and restart, an SMTP outage: nothing lost,
    nothing twice, every acknowledgement sent once or recorded as suppressed."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), "--short"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the soak stops its daemon, Dovecot and SMTP server
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert out.rstrip().endswith("PASS"), out
    assert time.monotonic() - started < 120, out


@pytest.fixture
def imap(tmp_path):
    server = servers.Dovecot.start(tmp_path / "dovecot")
    yield server
    server.stop()


def test_mail_arriving_while_a_batch_is_handled_does_not_wait_for_the_next_arrival(imap, tmp_path):
    """aioimaplib drops an EXISTS that comes with the answer to another command (SEARCH,
    FETCH, MOVE): mail that arrived while a batch was handled sat in INBOX until more mail
    came, or until the IDLE renewal 25 minutes later. Here the first message takes about a
    second to analyse (a backtracking filter rule) and the second arrives meanwhile."""
    rules = rules_with_slow_rule(tmp_path)
    d = Daemon(tmp_path, imap, daemon={"message_timeout": 120}, extra=f'[rules]\ndir = "{rules}"')
    d.start()
    try:
        wait_for(lambda: d.query("SELECT state FROM mailbox_state") == [("idle",)], 20, "idle")
        servers.append(
            imap, "support", "INBOX", human(Message_ID="<slow@x>", Subject="a" * 26 + "!")
        )
        wait_for(lambda: d.query("SELECT state FROM mailbox_state") == [("fetching",)], 10)
        time.sleep(0.3)  # the first message is fetched and being analysed
        servers.append(imap, "support", "INBOX", human(Message_ID="<second@x>", Subject="hi"))
        wait_for(lambda: d.scalar("SELECT COUNT(*) FROM tickets") >= 1, 60, "the slow one")
        wait_for(lambda: d.count("INBOX") == 0, 10, "the second message, with no more mail")
        assert d.scalar("SELECT COUNT(*) FROM tickets") == 2
    finally:
        assert d.stop() == 0


def test_a_worker_busy_with_a_poison_message_dies_with_its_sigkilled_daemon(imap, tmp_path):
    """After `kill -9` of the daemon (the OOM killer, a supervisor that signals the main pid
    only), a parse worker stuck on a poison message spun on alone, forever."""
    rules = rules_with_slow_rule(tmp_path)
    d = Daemon(
        tmp_path,
        imap,
        daemon={"message_timeout": 600},
        extra=f'[rules]\ndir = "{rules}"',
        own_session=True,  # so what it leaves behind can be found
    )
    servers.append(imap, "support", "INBOX", human(Message_ID="<stuck@x>", Subject="a" * 60 + "!"))
    d.start()
    pid = d.proc.pid
    try:
        busy = lambda: any(  # noqa: E731 - a worker is spinning on the poison message
            procs.cpu_seconds(p) > 1.0 for p in d.left_behind() if p != pid
        )
        wait_for(busy, 30, "a worker busy with the poison message")
        d.kill()
        wait_for(lambda: not d.left_behind(), 5, "the daemon's workers to end with it")
    finally:
        for left in d.left_behind():
            os.kill(left, signal.SIGKILL)


def _indexes(path) -> set[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return set(
            conn.execute(
                "SELECT tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
        )
    finally:
        conn.close()


def test_a_kill_during_the_very_first_start_leaves_no_table_without_its_indexes(tmp_path):
    """A SIGKILL between creating a table and its indexes left the table without them for
    good (later starts saw the table and skipped them), among them the unique message key."""
    from triage.store.sqlite import Store

    Store(tmp_path / "whole.db").close()
    want = _indexes(tmp_path / "whole.db")
    assert any("UNIQUE" in sql and "message_key" in sql for _table, sql in want)
    db = tmp_path / "killed.db"
    code = (
        "import os, signal, sqlite_utils.db as d\n"
        "create_index = d.Table.create_index\n"
        "def die(self, *args, **kwargs):\n"
        "    if self.name == 'messages':  # the messages table is there, its indexes not yet\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return create_index(self, *args, **kwargs)\n"
        "d.Table.create_index = die\n"
        "from triage.store.sqlite import Store\n"
        f"Store({str(db)!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60)
    assert done.returncode == -signal.SIGKILL
    Store(db).close()  # the next start
    assert _indexes(db) == want
