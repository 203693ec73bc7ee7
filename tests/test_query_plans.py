"""Every statement the store runs per message, and those of the queue, `status` and `report`,
reads messages, tickets, events and outbox by an index, never by a full scan.

The statements are not copied here: every SQLite connection the code opens is traced while
the real commands run over the fixtures (replayed twice, so the dedup and threading look-ups
find what they look for), and each statement that ran is explained (EXPLAIN QUERY PLAN) on
the database it ran against. A query added later that scans one of those tables fails here.
Why it matters: in a store with years in it (bench/bigstore.py: 1,000,000 messages, 300,000
tickets) a scan of messages is a quarter of a second, per statement.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import ROOT
from tests.test_outbox import dsn
from triage.cli import cli
from triage.core import lifecycle, sla
from triage.desk import plugin, web

BIG = ("messages", "tickets", "events", "outbox")  # the tables that grow with the years
NOW = "2026-03-10T14:30:00Z"

# A full pass that is the point of the statement, each over a narrow index of its own (never
# the wide rows): the response report counts every ticket ever opened, and `status` counts
# every outbox row by status (its JSON lists them all).
WHOLE = {
    "tickets_outcomes": "the response report counts every ticket",
    "idx_outbox_status": "`status` counts the outbox rows by status",
}

# A search by a kind most rows have reads most of the table all the same: outbox rows end
# `sent`, messages are mostly tickets, appends and filtered mail, and so are their events.
COMMON = {
    "idx_outbox_status": ("status", ("sent",)),
    "idx_messages_action": ("action", ("ticket", "append", "filtered")),
    "idx_events_kind": ("kind", ("created", "appended", "filtered", "auto_reply_queued")),
}
_KIND = re.compile(r"^SEARCH (\w+)(?: AS \w+)? USING (?:COVERING )?INDEX (\w+) \((\w+)=\?\)$")
_SCAN = re.compile(r"^SCAN (\w+)(?: AS \w+)?(?: USING (?:COVERING )?INDEX (\w+))?")
_RUNS = re.compile(r"^\s*(SELECT|WITH|UPDATE|DELETE|INSERT\b.*\bSELECT\b)", re.I | re.S)


class Traced:
    """Every statement run on any connection opened while it is installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.statements: list[str] = []
        real = sqlite3.connect

        def connect(database, *args, **kwargs):
            conn = real(database, *args, **kwargs)
            if _on_disk(database):  # not Datasette's own in-memory catalogue
                conn.set_trace_callback(self.statements.append)
            return conn

        monkeypatch.setattr(sqlite3, "connect", connect)
        self.real = real

    def take(self) -> list[str]:
        """The statements traced since the last take, each once, that read rows."""
        seen = list(dict.fromkeys(self.statements))
        self.statements.clear()
        return [s for s in seen if _RUNS.match(s) and "sqlite_master" not in s]


def _on_disk(database: object) -> bool:
    """A connection to a store's file (a path, or a `file:` URI as the desk opens it)."""
    target = str(database).removeprefix("file:").split("?", 1)[0]
    return target.endswith(".db") and Path(target).is_file()


def full_scans(conn: sqlite3.Connection, statement: str) -> list[str]:
    """The plan lines of `statement` that read a whole table of `BIG` (or a whole index of
    it, other than a partial one or one of `WHOLE`)."""
    partial = {
        name
        for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
        if sql and " WHERE " in sql.upper()
    }
    bad = []
    for *_, detail in conn.execute("EXPLAIN QUERY PLAN " + statement):
        kind = _KIND.match(detail)
        if kind is not None and kind.group(2) in COMMON:
            column, values = COMMON[kind.group(2)]
            if any(re.search(rf"\b{column}\s*=\s*'{v}'", statement) for v in values):
                bad.append(f"{detail}: most rows are {' or '.join(values)}")
            continue
        m = _SCAN.match(detail)
        if m is None:
            continue
        table, index = m.groups()
        names = {table} | {t for t in BIG if detail.startswith(f"SCAN {t} ")}
        if not names & set(BIG):
            # an alias: `SCAN o` for `outbox o`; which table it is, the statement says
            alias = re.search(rf"\b({'|'.join(BIG)})\s+(?:AS\s+)?{table}\b", statement)
            if alias is None:
                continue
        if index is not None and (index in partial or index in WHOLE):
            continue
        bad.append(detail)
    return bad


def explain_all(db: Path, statements: list[str]) -> dict[str, list[str]]:
    """statement -> its full scans, for those that have any."""
    conn = sqlite3.connect(db)
    for name, (arity, fn) in plugin.functions(plugin.Desk()).items():
        conn.create_function(name, arity, fn)
    try:
        found = {s: full_scans(conn, s) for s in statements}
    finally:
        conn.close()
    return {" ".join(s.split())[:400]: bad for s, bad in found.items() if bad}


def triage(*args: str | Path, codes: tuple[int, ...] = (0,)) -> str:
    result = CliRunner().invoke(cli, ["--log-level", "warning", *map(str, args)])
    assert result.exit_code in codes, result.output
    return result.output


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A store made by the real code, holding the fixtures (replayed untraced)."""
    db = tmp_path_factory.mktemp("plans") / "triage.db"
    triage("contacts", "import", "--db", db, ROOT / "fixtures" / "contacts.csv")
    triage("replay", "--db", db, "--now", NOW, "--workers", "1", ROOT / "fixtures" / "emails")
    return db


def test_the_lookups_of_each_message_read_by_index(store, monkeypatch):
    """Dedup keys, threads, tickets, acknowledgements and bounces (store/facts.py) and what
    store/records.py reads and updates, as a replay of every fixture runs them: once more
    into the same store (every message a duplicate), then into a copy of it that has
    forgotten its messages, so that replies thread onto the stored tickets."""
    traced = Traced(monkeypatch)
    triage("replay", "--db", store, "--now", NOW, "--workers", "1", ROOT / "fixtures" / "emails")
    statements = traced.take()
    assert any("json_each(" in s and "wanted_keys" in s for s in statements)  # facts ran

    copy = store.with_name("threads.db")
    source = traced.real(store)
    try:
        source.execute(f"VACUUM INTO '{copy}'")
    finally:
        source.close()
    conn = traced.real(copy)
    conn.execute("DELETE FROM messages WHERE ticket_id IS NULL")
    conn.execute("UPDATE messages SET message_key = message_key || '#gone'")
    conn.commit()
    conn.close()
    traced.take()
    out = triage(
        "replay", "--db", copy, "--now", NOW, "--workers", "1", "--json",
        ROOT / "fixtures" / "emails",
    )  # fmt: skip
    assert '"action": "append"' in out  # threading found the stored tickets
    statements += traced.take()

    # A delivery failure of one of our acknowledgements: linked to its ticket, the address
    # remembered, the outbox row marked.
    conn = traced.real(store)
    to, ack = conn.execute(
        "SELECT to_addr, message_id FROM outbox WHERE ticket_id IS NOT NULL"
    ).fetchone()
    conn.close()
    report = store.with_name("bounce")
    report.mkdir()
    (report / "dsn.eml").write_bytes(dsn(ack, to))
    traced.take()
    triage("replay", "--db", store, "--now", NOW, "--workers", "1", report)
    bounced = traced.take()
    assert any(s.startswith("INSERT INTO bounces") for s in bounced)
    statements += bounced
    assert explain_all(store, statements) == {}


def test_tickets_open_status_and_report_read_by_index(store, monkeypatch):
    traced = Traced(monkeypatch)
    triage("tickets", "--open", "--db", store)
    triage("tickets", "--open", "--breached", "--now", NOW, "--db", store)
    triage("status", "--json", "--now", NOW, "--db", store, codes=(0, 1, 2))
    triage("report", "--now", NOW, "--db", store)
    triage("report", "--now", NOW, "--since", "2026-03-01", "--db", store)
    statements = traced.take()
    assert any("FROM tickets" in s for s in statements)
    assert explain_all(store, statements) == {}


def test_the_desk_queue_at_risk_and_filtered_today_read_by_index(store, monkeypatch):
    traced = Traced(monkeypatch)
    ds = web.app(
        store,
        sla.load_policies(ROOT / "rules" / "sla"),
        clock=lambda: datetime(2026, 3, 10, 15, tzinfo=UTC),
    )

    async def get(path: str) -> int:
        return (await ds.client.get(path)).status_code

    assert asyncio.run(get("/triage/queue")) == 200
    assert asyncio.run(get("/triage/queue?page=2")) == 200
    assert asyncio.run(get("/triage/queue.json")) == 200
    assert asyncio.run(get("/triage/at-risk")) == 200
    assert asyncio.run(get("/triage/filtered-today")) == 200
    statements = traced.take()
    assert any("desk_used" in s for s in statements)  # the queue's own statement ran
    assert any(s.startswith("SELECT COUNT(*) FROM tickets") for s in statements)  # its count
    assert explain_all(store, statements) == {}


def test_the_prune_reads_and_writes_by_index(store, monkeypatch):
    copy = store.with_name("prune.db")
    source = sqlite3.connect(store)
    try:
        source.execute(f"VACUUM INTO '{copy}'")
    finally:
        source.close()
    traced = Traced(monkeypatch)
    later = "2027-01-01T00:00:00Z"  # every fixture is older than a day by then
    triage("prune", "--older-than", "1", "--now", later, "--dry-run", "--db", copy)
    out = triage("prune", "--older-than", "1", "--now", later, "--json", "--db", copy)
    assert '"messages": 0' not in out
    statements = traced.take()
    assert any("UPDATE messages SET" in s for s in statements)
    assert explain_all(copy, statements) == {}


def test_the_open_tickets_index_names_the_states_that_leave_the_queue(store):
    """The partial index, the statements that use it and the lifecycle agree on which
    states are done (a state added to DONE needs a new index and new statements)."""
    conn = sqlite3.connect(store)
    try:
        (sql,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'tickets_open'"
        ).fetchone()
    finally:
        conn.close()
    assert set(re.findall(r"'(\w+)'", sql)) == set(lifecycle.DONE)


@pytest.mark.parametrize(
    ("statement", "scans"),
    [
        ("SELECT * FROM messages WHERE subject = 'x'", True),
        ("SELECT COUNT(*) FROM tickets", True),
        ("SELECT o.id FROM outbox o WHERE o.raw = 'x'", True),
        ("SELECT * FROM messages WHERE message_key = 'x'", False),
        ("SELECT id FROM tickets WHERE status NOT IN ('resolved', 'closed')", False),
        ("SELECT * FROM contacts", False),  # not a table that grows with the years
        ("SELECT id FROM outbox WHERE status = 'sent' AND to_addr = 'a'", True),
        ("SELECT id FROM outbox WHERE status = 'pending'", False),  # a few rows, always
    ],
)
def test_the_check_itself_tells_a_scan_from_a_search(store, statement, scans):
    assert bool(explain_all(store, [statement])) == scans
