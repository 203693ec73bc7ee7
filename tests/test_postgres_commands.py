"""The commands that read and write the store's rows, run on SQLite and on PostgreSQL
(`[store] url`) over the same replayed fixtures: the same output, the same rows after."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from .conftest import FIXTURES
from .test_store_postgres import NOW, ROWS, SINKS, config_for, replayed_pair, rows_of, run

OPERATOR = '\n[daemon]\noperator = "ops@msp.example"\n'


@pytest.fixture
def both(tmp_path, postgres_url) -> tuple[Path, Path]:
    """(SQLite's configuration, PostgreSQL's), each store holding the replayed fixtures."""
    return replayed_pair(tmp_path, postgres_url, extra=OPERATOR + SINKS)


def stores(lite_config: Path, pg_config: Path):
    from triage.config import load_config
    from triage.store.postgres import PostgresStore
    from triage.store.sqlite import Store

    return Store(load_config(lite_config).db), PostgresStore(load_config(pg_config).database)


def rows(lite_config: Path, pg_config: Path) -> tuple[dict, dict]:
    """Both stores' rows, instants of today's clock (a command without --now) masked."""
    today = datetime.now(UTC).date().isoformat()
    out = []
    for store in stores(lite_config, pg_config):
        try:
            got = rows_of(store)
        finally:
            store.close()
        for table in got.values():
            for r in table:
                for k, v in r.items():
                    if isinstance(v, str) and v.startswith(today):
                        r[k] = "<now>"
                    elif isinstance(v, str) and f'"{today}' in v:
                        r[k] = "<has now>"
                    elif isinstance(v, str):
                        r[k] = RANDOM.sub("<random>", v)
        out.append(got)
    return out[0], out[1]


# ids made at random per run: sink deliveries', outgoing mail's Message-IDs
RANDOM = re.compile(r"msg_[a-z0-9]{20,}|(?<=\.)[0-9a-f]{12}(?=@triage\.invalid)")


def assert_same_rows(lite_config: Path, pg_config: Path) -> None:
    want, got = rows(lite_config, pg_config)
    for table in ROWS:
        assert len(got[table]) == len(want[table]), table
        for pg_row, lite_row in zip(got[table], want[table], strict=True):
            assert pg_row == lite_row, table


def same(lite_config: Path, pg_config: Path, *args: str) -> tuple[int, str]:
    """Run `args` on both (--config after the command's name): the same code and output."""
    n = 2 if len(args) > 1 and args[1] in SUBCOMMANDS.get(args[0], ()) else 1
    lite_code, lite_out = run(*args[:n], "--config", str(lite_config), *args[n:])
    pg_code, pg_out = run(*args[:n], "--config", str(pg_config), *args[n:])
    today = datetime.now(UTC).date().isoformat()
    lite_out, pg_out = (
        re.sub(today + r"T[\d:.]+Z?", "<now>", RANDOM.sub("<random>", " ".join(out.split())))
        for out in (lite_out, pg_out)  # words compared: a terminal wraps the longer name
    )
    # a follow-up command names the store by its option: --db FILE, or the configuration
    lite_db = str(lite_config.parent / "t.db")
    lite_out = lite_out.replace(f"--db {lite_db}", "<store>").replace(lite_db, "<where>")
    pg_out = pg_out.replace(f"--config {pg_config}", "<store>")
    pg_out = re.sub(r"postgresql://\S+/\w+", "<where>", pg_out)
    assert pg_out == lite_out, args
    assert pg_code == lite_code, args
    return lite_code, lite_out


SUBCOMMANDS = {
    "errors": ("retry",),
    "review": ("release", "digest"),
    "ticket": ("respond", "show"),
    "contacts": ("show", "approve"),
    "outbox": ("retry", "drop"),
}


def on_both(lite_config: Path, pg_config: Path, sql: str, params=()) -> None:
    for store in stores(lite_config, pg_config):
        try:
            store.conn.execute(sql, params)
        finally:
            store.close()


def test_explain_a_file_a_ticket_and_a_stored_message_say_the_same_on_both(both):
    lite, pg = both
    eml = str(FIXTURES / "64-reply-in-reply-to.eml")
    code, out = same(lite, pg, "explain", "--now", NOW, eml)
    assert code == 0 and "action ticket" in out, out  # conversations only with --db
    code, out = same(lite, pg, "explain", "T-000001")
    assert code == 0 and "T-000001" in out and "events:" in out, out
    key = "<4f7c2a9e-1b3d-4c8e-9a51-7d2e6b0c3f18@acme.example>"
    code, out = same(lite, pg, "explain", "--message", key)
    assert code == 0 and "decided again from its kept bytes" in out, out
    code, out = same(lite, pg, "explain", "T-000099")
    assert code == 1 and "no ticket T-000099" in out, out
    # what it names is the database it read: the URL, or the configuration naming it
    code, out = run("explain", "--config", str(pg), "T-000001")
    assert "--config" in out and "triage.db" not in out and "--db" not in out, out
    code, out = run("explain", "--config", str(pg), "T-000099")
    assert out.startswith("Error: postgresql://") and "triage.db" not in out, out


def test_errors_and_errors_retry_list_and_run_a_quarantined_message_alike(both):
    lite, pg = both
    on_both(lite, pg, "UPDATE messages SET action = 'quarantined', reason = 'parse' WHERE id = 38")
    code, out = same(lite, pg, "errors")
    assert code == 0 and "38" in out and "parse" in out, out
    same(lite, pg, "errors", "retry", "38")
    code, out = same(lite, pg, "errors", "retry", "1")
    assert code == 1 and "not quarantined" in out, out
    assert_same_rows(lite, pg)


def test_review_release_and_digest_do_the_same_on_both(both):
    lite, pg = both
    code, out = same(lite, pg, "review", "digest", "--now", NOW)
    assert code == 0 and "Subject:" in out, out
    code, out = same(lite, pg, "review", "release", "--now", NOW, "38")
    assert code == 0 and "released 38: ticket T-000023" in out, out
    code, out = same(lite, pg, "review", "digest", "--send", "--now", NOW)
    assert code == 0 and "queued for ops@msp.example" in out, out
    code, out = same(lite, pg, "review", "release", "--now", NOW, "38")
    assert code == 1, out
    assert_same_rows(lite, pg)


def test_ticket_respond_and_contacts_show_and_approve_do_the_same_on_both(both):
    lite, pg = both
    code, out = same(lite, pg, "ticket", "respond", "--at", "2026-03-10T15:00:00Z", "T-000001")
    assert code == 0 and "first response recorded" in out, out
    code, out = same(lite, pg, "ticket", "respond", "--at", "2026-03-10T16:00:00Z", "T-000001")
    assert code == 0 and "already answered" in out, out
    code, out = same(lite, pg, "contacts", "show", "jane.doe@acme.example")
    assert code == 0 and "Acme Corp" in out, out
    code, out = same(lite, pg, "contacts", "show", "nobody@acme.example")
    assert code == 1, out
    code, out = same(lite, pg, "contacts", "approve", "hquist@microsoft.com")
    assert code == 0 and "approved hquist@microsoft.com" in out, out
    assert_same_rows(lite, pg)


def test_outbox_list_retry_and_drop_do_the_same_on_both(both):
    lite, pg = both
    on_both(lite, pg, "UPDATE outbox SET status = 'failed', last_error = 'x' WHERE id IN (1, 2)")
    on_both(lite, pg, "UPDATE deliveries SET status = 'dead' WHERE id = 1")
    code, out = same(lite, pg, "outbox", "--json")
    assert code == 0, out
    for args in (("retry", "1"), ("drop", "2"), ("retry", "d1"), ("drop", "d2"), ("retry", "3")):
        same(lite, pg, "outbox", *args)
    code, out = same(lite, pg, "outbox", "--json")
    assert_same_rows(lite, pg)


def test_metrics_and_the_html_report_read_the_same_figures_on_both(both, tmp_path):
    lite, pg = both
    on_both(lite, pg, "UPDATE outbox SET status = 'failed' WHERE id IN (1, 2)")
    # as fetched from a mailbox, arriving 30 s, 10 min, 2 h after their Date; one unreadable
    on_both(lite, pg, "UPDATE messages SET source = 'imap:support' WHERE id <= 4")
    for n, late in ((1, "2026-01-05T14:13:07Z"), (2, "2026-01-05T16:13:09Z"), (3, "x")):
        on_both(lite, pg, "UPDATE messages SET received_at = ? WHERE id = ?", (late, n))
    on_both(lite, pg, "UPDATE messages SET date = 'not a date' WHERE id = 4")
    code, out = same(lite, pg, "metrics")
    assert code == 0 and 'triage_outbox_failed{kind="ack"} 2.0' in out, out
    assert "triage_ingest_latency_seconds_count 2.0" in out, out
    assert 'triage_ingest_latency_seconds_bucket{le="30.0"} 1.0' in out, out
    assert 'triage_ingest_latency_seconds_bucket{le="600.0"} 2.0' in out, out  # 600 s is in it
    assert "triage_ingest_latency_seconds_sum 630.0" in out, out
    pages = []
    for config in (lite, pg):
        page = tmp_path / f"{config.stem}.html"
        at = "2026-03-12T00:00:00Z"
        code, out = run("report", "--config", str(config), "--now", at, "--html", str(page))
        assert code == 0, out
        pages.append(page.read_text())
    assert pages[0] == pages[1]
    assert "Breaches per company" in pages[0] and "Globex Corporation" in pages[0]
    for config in (lite, pg):
        page = tmp_path / f"{config.stem}-since.html"
        args = ["--since", "2026-03-10T14:00:00Z", "--html", str(page)]
        code, out = run("report", "--config", str(config), "--now", NOW, *args)
        assert code == 0, out
    assert (tmp_path / "lite-since.html").read_text() == (tmp_path / "pg-since.html").read_text()
    # read-only on PostgreSQL too: nothing written, nothing changed
    assert_same_rows(lite, pg)


SEARCHES = (
    "printer",
    "payroll cutoff",
    "laptop",
    "PRINTER offline",
    "Büro drucker",
    "comptabilité",
    "vpn",
    "zzz",
)


def test_a_search_finds_the_same_messages_on_both(both):
    """The same words find the same messages with the same tickets on both backends (FTS5
    on SQLite, the `search` tsvector on PostgreSQL); the order (rank) may differ."""
    from triage.store.desk import fts

    lite, pg = both
    found = []
    for store in stores(lite, pg):
        try:
            found.append(
                {
                    w: sorted((h.message, h.ticket) for h in fts.search(store.conn, w))
                    for w in SEARCHES
                }
            )
            # written down in docs/operations.md: diacritics count on PostgreSQL ("simple")
            found.append(len(fts.search(store.conn, "buro")))
            marked = fts.search(store.conn, "printer")[0].snippet
            assert "[printer]" in marked.lower(), marked  # the word marked in the snippet
            for typed in ('"', "AND", "subject:", "-printer", "print*", "(", "   "):
                fts.search(store.conn, typed)  # searched for, never parsed: no error
        finally:
            store.close()
    lite_found, lite_buro, pg_found, pg_buro = found
    assert (lite_buro, pg_buro) == (1, 0)
    assert pg_found == lite_found
    assert all(lite_found[w] for w in SEARCHES[:-1]) and not lite_found["zzz"]


def test_the_read_only_connection_of_the_report_and_metrics_cannot_write(tmp_path, postgres_url):
    import psycopg

    from triage.config import load_config
    from triage.store.desk.readonly import connect
    from triage.store.postgres import PostgresStore

    database = load_config(config_for(tmp_path, postgres_url)).database
    PostgresStore(database).close()  # the schema made
    conn = connect(database)
    try:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM tickets")
        conn.execute("ROLLBACK")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            conn.execute("INSERT INTO contacts (email) VALUES ('a@example.com')")
    finally:
        conn.close()
