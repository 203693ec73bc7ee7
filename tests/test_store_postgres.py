"""The store on PostgreSQL (`[store] url`): replaying the fixtures gives the rows SQLite gets,
the commands that read them agree, the schema is migrated by the same numbers, and the
commands that need SQLite for now refuse before they touch anything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from triage.cli import cli
from triage.store import migrations, postgres_schema

from .conftest import FIXTURES, ROOT

NOW = "2026-03-10T14:30:00Z"


def config_for(tmp_path: Path, url: str, name: str = "pg.toml", extra: str = "") -> Path:
    from tests.support.postgres import PASSWORD

    secret = tmp_path / "pg-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    path = tmp_path / name
    path.write_text(
        f'[store]\nurl = "{url}"\npassword_file = "{secret}"\nfiles = "pg.files"\n{extra}'
    )
    return path


def run(*args: str) -> tuple[int, str]:
    done = CliRunner().invoke(cli, ["--log-level", "error", *args])
    if done.exception and not isinstance(done.exception, SystemExit):
        raise done.exception
    return done.exit_code, done.output


# The rows that matter, read the same way from both: every column but the ones that are
# random per run (message ids of acknowledgements and their bytes, sink event ids).
ROWS = {
    "tickets": "SELECT * FROM tickets ORDER BY id",
    "messages": "SELECT id, message_key, message_id, sha256, source, from_addr, subject, date,"
    " received_at, action, reason, ticket_id, size, body, decision, fingerprint"
    " FROM messages ORDER BY id",
    "events": "SELECT id, ticket_id, message_key, kind, at, detail FROM events ORDER BY id",
    "outbox": "SELECT id, ticket_id, to_addr, subject, status, attempts, created_at"
    " FROM outbox ORDER BY id",
    "attachments": "SELECT message_key, filename, content_type, size, sha256 FROM attachments"
    " ORDER BY id",
    "message_bytes": "SELECT sha256, raw FROM message_bytes ORDER BY sha256",
    "deliveries": "SELECT sink, event_type, ticket, status FROM deliveries ORDER BY id",
}


def rows_of(store) -> dict[str, list[dict]]:
    out = {}
    for name, sql in ROWS.items():
        rows = [dict(r) for r in store.db.query(sql)]
        for r in rows:
            r.pop("search", None)
            for k, v in r.items():
                if isinstance(v, memoryview):
                    r[k] = bytes(v)
        out[name] = rows
    return out


SINKS = (
    '\n[[sink]]\nname = "hook"\nkind = "webhook"\nurl = "https://hooks.example/t"\n'
    'events = ["ticket.created", "ticket.appended"]\nsecret_env = "HOOK_SECRET"\n'
)


def replayed_pair(tmp_path: Path, postgres_url: str, extra: str = SINKS) -> tuple[Path, Path]:
    """(SQLite's configuration, PostgreSQL's), each store holding the demo's contacts and the
    replayed fixtures; `extra` is added to both configurations."""
    pg_config = config_for(tmp_path, postgres_url, extra=extra)
    lite_config = tmp_path / "lite.toml"
    lite_config.write_text(f'[store]\ndb = "{tmp_path / "t.db"}"\n{extra}')
    contacts = str(ROOT / "fixtures" / "contacts.csv")
    for config in (lite_config, pg_config):
        code, out = run("contacts", "import", "--config", str(config), contacts)
        assert code == 0 and "15 added" in out, out
        code, out = run("replay", "--config", str(config), "--now", NOW, "--json", str(FIXTURES))
        assert code == 0, out
    return lite_config, pg_config


def test_replay_into_postgres_gives_the_rows_sqlite_gets_and_the_commands_agree(
    tmp_path, postgres_url
):
    from triage.config import load_config
    from triage.store.postgres import PostgresStore
    from triage.store.sqlite import Store

    lite_config, pg_config = replayed_pair(tmp_path, postgres_url)
    lite = Store(tmp_path / "t.db")
    pg = PostgresStore(load_config(pg_config).database)
    try:
        want, got = rows_of(lite), rows_of(pg)
        # the full-text column is kept by PostgreSQL itself, under its GIN index
        found = pg.conn.execute(
            "SELECT subject, body FROM messages WHERE search @@ plainto_tsquery('simple', ?)",
            ("printer",),
        ).fetchall()
    finally:
        lite.close()
        pg.close()
    assert found and all("printer" in f"{s} {b}".lower() for s, b in found), found
    assert len(want["tickets"]) == 22 and len(want["outbox"]) > 0 and want["deliveries"]
    assert sum(t["contact"] is not None for t in want["tickets"]) >= 2  # contacts matched
    for name in ROWS:
        assert got[name] == want[name], name
    # the same attachments, quarantined and held messages in the folder beside each
    kept = {p.relative_to(tmp_path / "t.db.files") for p in (tmp_path / "t.db.files").rglob("*")}
    assert kept and kept == {
        p.relative_to(tmp_path / "pg.files") for p in (tmp_path / "pg.files").rglob("*")
    }
    # the commands that read them say the same on both
    at = ["--at", "2026-03-10T15:00:00Z", "--by", "ana"]
    for args in (
        ["contacts", "list"],
        ["filtered", "--json"],
        ["filtered", "--category", "spam", "--json"],
        ["review", "--json"],
        ["report", "--now", NOW, "--json"],
        ["ticket", "assign", "T-000001", "ben", *at],
        ["ticket", "note", "T-000001", "called back", *at],
        ["ticket", "status", "T-000002", "resolved", *at],
        ["ticket", "priority", "T-000003", "P1", "--reason", "office down", *at],
        ["sla", "check", "--now", "2026-03-12T00:00:00Z"],
        ["tickets", "--json"],
        ["tickets", "--open", "--breached", "--now", "2026-03-12T09:00:00Z", "--json"],
        ["status", "--json", "--now", NOW],
        ["ticket", "show", "T-000001", "--json", "--now", NOW],
        ["ticket", "show", "T-000021", "--json", "--now", NOW],
    ):
        n = 2 if args[0] in ("contacts", "ticket", "sla") else 1
        lite_code, lite_out = run(*args[:n], "--config", str(lite_config), *args[n:])
        pg_code, pg_out = run(*args[:n], "--config", str(pg_config), *args[n:])
        assert (pg_code, pg_out) == (lite_code, lite_out), args
    # a listing names the database it lists: the URL, not the file the defaults would use
    code, out = run("tickets", "--config", str(pg_config))
    assert code == 0 and "Tickets in postgresql://" in out and "triage.db" not in out, out
    code, out = run("filtered", "--config", str(pg_config))
    assert code == 0 and "Filtered in postgresql://" in out and "triage.db" not in out, out
    code, out = run("report", "--config", str(pg_config), "--now", NOW)
    assert code == 0 and "First responses in postgresql://" in out, out
    code, out = run("ticket", "show", "--config", str(pg_config), "T-000099")
    assert code == 1 and postgres_url in out and "fix: `triage tickets` lists" in out, out
    lite = Store(tmp_path / "t.db")
    pg = PostgresStore(load_config(pg_config).database)
    try:  # what those commands wrote is the same too
        want, got = rows_of(lite), rows_of(pg)
    finally:
        lite.close()
        pg.close()
    for name in ROWS:
        assert got[name] == want[name], name
    # and again: every message is a duplicate, nothing is written twice
    code, out = run("replay", "--config", str(pg_config), "--now", NOW, "--json", str(FIXTURES))
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(lines) == 90 and {line["action"] for line in lines} == {"duplicate"}
    pg = PostgresStore(load_config(pg_config).database)
    try:
        assert rows_of(pg) == want
    finally:
        pg.close()


def test_the_migrations_are_the_same_by_number_and_name_on_both():
    """A migration added to SQLite's list needs its PostgreSQL form under the same name."""
    assert [m.__name__ for m in postgres_schema.MIGRATIONS] == [
        m.__name__ for m in migrations.MIGRATIONS
    ], "append the PostgreSQL form of the new migration to triage/store/postgres_schema.py"


def test_a_new_postgres_database_is_migrated_once_and_a_newer_one_refused(
    postgres_url, monkeypatch
):
    import psycopg

    from tests.support.postgres import PASSWORD
    from triage.config.credentials import Secret
    from triage.config.storage import Database
    from triage.store.migrations import SchemaTooNew
    from triage.store.postgres import Connection, PostgresStore

    database = Database(postgres_url, Secret("env", "TRIAGE_TEST_PG"))
    monkeypatch.setenv("TRIAGE_TEST_PG", PASSWORD)
    raw = psycopg.connect(postgres_url, password=PASSWORD, autocommit=True)
    conn = Connection(raw)
    try:
        assert postgres_schema.upgrade(conn, "pg") == list(range(1, migrations.LATEST + 1))
        assert postgres_schema.upgrade(conn, "pg") == []
        assert postgres_schema.version(conn) == migrations.LATEST
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables").fetchall()}
        assert set(migrations.schema.RELEASE_TABLES) | {"deliveries", "message_bytes"} <= tables
        conn.execute("UPDATE triage_schema SET version = ?", (migrations.LATEST + 1,))
        with pytest.raises(SchemaTooNew, match="a later release upgraded it"):
            PostgresStore(database, busy_timeout=2)
    finally:
        raw.close()


def test_a_wrong_password_names_the_url_and_the_fix(tmp_path, postgres_url):
    config = config_for(tmp_path, postgres_url)
    (tmp_path / "pg-password").write_text("wrong\n")
    code, out = run("tickets", "--config", str(config))
    assert code == 1
    assert postgres_url in out and "password authentication failed" in out
    assert "check [store] url" in out and "Traceback" not in out


@pytest.mark.parametrize(
    ("command", "rest"),
    [
        (["web"], []),
        (["backup"], ["{tmp}/copy.db"]),
        (["prune"], ["--older-than", "30"]),
    ],
)
def test_a_command_that_needs_sqlite_refuses_on_postgres_before_it_starts(tmp_path, command, rest):
    """No server behind the url: the refusal comes before any connection or file."""
    config = tmp_path / "pg.toml"
    config.write_text('[store]\nurl = "postgresql://triage@127.0.0.1:9/none"\n')
    rest = [r.replace("{tmp}", str(tmp_path)) for r in rest]
    code, out = run(*command, "--config", str(config), *rest)
    assert code != 0
    assert "[store] url" in out and "needs SQLite for now" in out, out
    assert "Traceback" not in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pg.toml"]


def test_the_daemon_on_an_unreachable_server_says_so_and_writes_nothing(tmp_path):
    """`triage run` works on PostgreSQL (tests/test_daemon_postgres.py); a server that is
    not there stops its start with the url and the fix, before any file is made."""
    config = tmp_path / "pg.toml"
    config.write_text('[store]\nurl = "postgresql://triage@127.0.0.1:9/none"\n')
    code, out = run("run", "--config", str(config))
    assert code == 1
    assert "cannot connect to the PostgreSQL store" in out and "check [store] url" in out, out
    assert "127.0.0.1:9/none" in out and "Traceback" not in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pg.toml"]


def test_commands_do_not_import_psycopg_without_a_url():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from triage.cli import cli\n"
        "r = CliRunner().invoke(cli, ['replay', '--dry-run', '--json', 'fixtures/emails'])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'psycopg' not in sys.modules, 'psycopg imported'\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_a_connection_the_server_drops_mid_batch_stops_it_and_commits_nothing(
    tmp_path, postgres_url, rules
):
    """The server ends the store's session (a restart, an operator's pg_terminate_backend)
    inside a batch: the batch raises the database's error, nothing of it is kept, no message
    is quarantined for it, and the next store writes it whole."""
    from datetime import UTC, datetime

    import psycopg

    from tests.support.postgres import PASSWORD
    from triage.config.credentials import Secret
    from triage.config.storage import Database
    from triage.core.pipeline import analyse
    from triage.engine.batch import run_batch
    from triage.store.postgres import PostgresStore

    from .conftest import human

    secret = tmp_path / "pw"
    secret.write_text(PASSWORD)
    database = Database(postgres_url, Secret("file", str(secret)), tmp_path / "files")
    now = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
    mail = [analyse(human(Message_ID=f"<m{n}@x>", Subject=f"s{n}"), f"m{n}", rules) for n in (1, 2)]
    store = PostgresStore(database)
    store.begin()
    with psycopg.connect(postgres_url, password=PASSWORD, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (store.conn.raw.info.backend_pid,))
    with pytest.raises(psycopg.OperationalError):
        run_batch(store, rules, mail, now)
    store.close()  # no second error
    again = PostgresStore(database)
    try:
        assert again.conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0
        decided = run_batch(again, rules, mail, now)
        assert [d.action for d in decided] == ["ticket", "ticket"]
        assert [d.ticket for d in decided] == ["T-000001", "T-000002"]
    finally:
        again.close()


def test_two_replays_at_once_into_one_database_store_each_message_once(tmp_path, postgres_url):
    """Two processes write batches into one PostgreSQL database at the same time: batches
    take turns (an advisory lock per transaction, as SQLite's BEGIN IMMEDIATE), so each
    message is stored once, as a ticket or filtered by one and a duplicate to the other,
    and ticket numbers run on without a gap or a clash."""
    config = config_for(tmp_path, postgres_url)
    command = [sys.executable, "-m", "triage.cli", "--log-level", "error", "replay"]
    command += ["--config", str(config), "--now", NOW, "--json", str(FIXTURES)]
    runs = [
        subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in outputs]
    decided = [[json.loads(line) for line in out.splitlines()] for out, _ in outputs]
    assert [len(d) for d in decided] == [90, 90]
    for first, second in zip(*decided, strict=True):
        assert first["source"] == second["source"]
        actions = sorted([first["action"], second["action"]])
        assert actions.count("duplicate") >= 1, (first, second)
        assert "quarantined" not in actions
    numbers = sorted(d["ticket"] for run in decided for d in run if d["action"] == "ticket")
    assert numbers == [f"T-{n:06d}" for n in range(1, 23)]
