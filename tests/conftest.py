"""Shared test helpers: paths, the real-mail corpus, a default rule set."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "emails"
CORPUS = ROOT.parent / "shared" / "corpus"
SEEDS = ROOT.parent / "shared" / "seeds"

needs_corpus = pytest.mark.skipif(
    not (CORPUS / "MANIFEST.csv").is_file(),
    reason=f"the real-mail corpus is not beside this checkout ({CORPUS}); CI has it",
)
needs_seeds = pytest.mark.skipif(
    not SEEDS.is_dir(),
    reason=f"the seed documents are not beside this checkout ({SEEDS}); CI has them",
)


def corpus_rows() -> list[dict]:
    if not (CORPUS / "MANIFEST.csv").is_file():
        return []
    with (CORPUS / "MANIFEST.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="session")
def rules():
    from triage.config import Config
    from triage.core.pipeline import Rules

    return Rules.load(Config())


def rules_with_slow_rule(folder: Path) -> Path:
    """A copy of rules/ in `folder` plus a filter rule that backtracks catastrophically on a
    subject of many a's and one other character: a message that parses for as long as wanted
    (about a second at 26 a's, far longer at 40)."""
    rules = folder / "rules"
    shutil.copytree(ROOT / "rules", rules)
    with (rules / "filters.toml").open("a", encoding="utf-8") as fh:
        fh.write(
            '\n[[rule]]\nid = "slow"\nfield = "subject"\ntest = "matches"\nphrase = "^(a+)+$"\n'
            'source = "a rule with catastrophic backtracking"\n'
        )
    return rules


def build(
    headers: dict[str, str] | list[tuple[str, str]], body: str = "Hello,\nplease help.\n"
) -> bytes:
    """A small message from headers and a body; the test states every header it relies on."""
    items = headers.items() if isinstance(headers, dict) else headers
    head = "".join(f"{k}: {v}\r\n" for k, v in items)
    return (head + "\r\n" + body.replace("\n", "\r\n")).encode("utf-8")


def human(**extra: str) -> bytes:
    headers = {
        "From": "Jane Doe <jane@acme.example>",
        "To": "support@msp.example",
        "Subject": "Printer on floor 2 is jammed",
        "Date": "Tue, 10 Mar 2026 09:12:00 +0000",
        "Message-ID": "<abc123@mail.acme.example>",
    }
    body = extra.pop("body", "Hello,\nthe printer is jammed again.\nJane\n")
    for key, value in extra.items():
        headers[key.replace("_", "-")] = value
    return build(headers, body)


# --- Real servers (tests/support/): a private Dovecot and an SMTP sink per test -------------


@pytest.fixture
def make_dovecot(tmp_path):
    """Start private Dovecots: make_dovecot(tls=True, users={"support": "secret"}).
    Skips the test when Dovecot can't run here; every instance is stopped at teardown."""
    from tests.support.dovecot import Dovecot, skip_reason

    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    started = []

    def make(**options):
        dc = Dovecot.start(tmp_path, **options)
        started.append(dc)
        return dc

    try:
        yield make
    finally:
        for dc in started:
            dc.cleanup()


@pytest.fixture
def dovecot(make_dovecot):
    """A fresh private Dovecot (imap with STARTTLS + imaps, user support/secret)."""
    return make_dovecot()


@pytest.fixture
def make_smtp_sink(tmp_path):
    """Start SMTP sinks: make_smtp_sink(reply_code=None, tls=False, auth=None).
    Skips the test when aiosmtpd is missing; every sink is stopped at teardown."""
    from tests.support.smtp_sink import SmtpSink, skip_reason

    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    started = []

    def make(**options):
        sink = SmtpSink.start(tmp_path, **options)
        started.append(sink)
        return sink

    try:
        yield make
    finally:
        for sink in started:
            sink.stop()


@pytest.fixture
def smtp_sink(make_smtp_sink):
    """A fresh SMTP sink on 127.0.0.1 that accepts and saves every message."""
    return make_smtp_sink()


# --- PostgreSQL (tests/support/postgres.py): one private server per session, a database per test


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """A private PostgreSQL for the session; skips when it can't run here."""
    from tests.support.postgres import Postgres, skip_reason

    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    pg = Postgres.start(tmp_path_factory.mktemp("postgres"))
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """A new empty database on the session's PostgreSQL: its URL (the password is not in
    it: `PASSWORD` in tests/support/postgres.py, given as a config's password source)."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """A fresh store on each backend: SQLite in tmp_path, or a new database on the session's
    private PostgreSQL (skipped with the reason when it can't run here). Closed at teardown."""
    if request.param == "sqlite":
        from triage.store.sqlite import Store

        made = Store(tmp_path / "t.db")
    else:
        from tests.support.postgres import PASSWORD
        from triage.config.credentials import Secret
        from triage.config.storage import Database
        from triage.store.postgres import PostgresStore

        url = request.getfixturevalue("postgres_url")
        secret = tmp_path / "pg-password"
        secret.write_text(PASSWORD)
        made = PostgresStore(Database(url, Secret("file", str(secret)), tmp_path / "t.files"))
    try:
        yield made
    finally:
        made.close()
