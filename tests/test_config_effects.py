"""Every key the configuration accepts does something: one row per key, each asserting an effect.

A key that `triage check` accepts and nothing reads is a setting an operator
trusts in vain. Each row sets one key to a value other than its default and
checks what changes: the decision, the row, the bytes sent, the folder a
message lands in, the time a wait takes. `test_every_key_has_a_row` fails
when a key is added to the schema (triage/config/__init__.py `_SCHEMA`, `QUEUE_KEYS`,
triage/config/endpoints.py key sets) without a row here, or a `[[sink]]` key (any kind's,
triage/sinks/config.py) without a row in tests/test_config_effects_sinks.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from triage import instants
from triage.cli import cli
from triage.config import ConfigError, endpoints, known_keys, load_config
from triage.config.loading import SCHEMA, TABLES_ELSEWHERE
from triage.core.pipeline import Decision, Rules, analyse
from triage.engine.batch import run_batch
from triage.service import probes
from triage.sources.imap import ImapSession
from triage.store import mailboxes as mailbox_state
from triage.store.sqlite import Store

from . import servers
from .conftest import ROOT, build, human, rules_with_slow_rule
from .test_config import body_of

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)  # a Tuesday afternoon
EFFECTS: dict[str, Callable[[Env], None]] = {}


def effect(*keys: str):
    """Register `fn` as the row of each of `keys` ("section.key")."""

    def register(fn: Callable[[Env], None]) -> Callable[[Env], None]:
        for key in keys:
            assert key not in EFFECTS, key
            EFFECTS[key] = fn
        return fn

    return register


def schema_keys() -> set[str]:
    return set(known_keys())


def test_every_key_has_a_row():
    # a table checked elsewhere than SCHEMA must be one whose keys known_keys() collects
    elsewhere = {s for s, names in SCHEMA.items() if not names}
    assert elsewhere == {"queue", "mailbox", "smtp", "daemon"}
    assert set(TABLES_ELSEWHERE) == elsewhere
    missing = sorted(schema_keys() - set(EFFECTS))
    assert not missing, f"keys with no row asserting their effect: {missing}"
    assert not set(EFFECTS) - schema_keys(), "rows for keys the schema no longer has"
    # the [[sink]] keys' rows live beside this file (one row per key of every sink kind)
    from triage.sinks.config import sink_keys

    from .test_config_effects_sinks import SINK_EFFECTS

    sinks = {f"sink.{key}" for key in sink_keys()}
    missing = sorted(sinks - set(SINK_EFFECTS))
    assert not missing, f"[[sink]] keys with no row asserting their effect: {missing}"


# --------------------------------------------------------------------------- harness


class Env:
    """One row's world: a folder, private servers on demand, the pipeline and the daemon."""

    def __init__(self, tmp_path: Path, monkeypatch, make_dovecot, make_smtp_sink) -> None:
        self.tmp = tmp_path
        self.db = tmp_path / "t.db"
        self.monkeypatch = monkeypatch
        self._dovecot = make_dovecot
        self._sink = make_smtp_sink
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
        self.graphs: list = []  # Graph stand-ins started by graph(), stopped by the fixture

    def config(self, text: str = "", name: str = "triage.toml") -> Path:
        path = self.tmp / name
        head = "" if "[store]" in text else f'[store]\ndb = "{self.db}"\n'
        path.write_text(head + text, encoding="utf-8")
        return path

    # -- the pipeline, as replay and the daemon run it
    def triage(
        self, text: str, *raws: bytes, now: datetime = NOW, name: str = "triage.toml"
    ) -> tuple[list[Decision], Store]:
        config = load_config(self.config(text, name))
        from triage.store import contacts as contacts_store

        store = Store(config.db, config.ticket_prefix)
        rules = Rules.load(config, contacts_store.load(store))
        out = []
        for n, raw in enumerate(raws):
            out += run_batch(store, rules, [analyse(raw, f"m{n}", rules)], now, [raw])
        return out, store

    def contacts(self) -> None:
        done = CliRunner().invoke(
            cli,
            ["contacts", "import", "--db", str(self.db), str(ROOT / "fixtures" / "contacts.csv")],
        )
        assert done.exit_code == 0, done.output

    # -- servers
    def dovecot(self, **options) -> servers.Dovecot:
        return self._dovecot(**options)

    def sink(self, **options) -> servers.SmtpSink:
        return self._sink(**options)

    def postgres(self) -> str:
        """A new database on the session's private PostgreSQL (skips when there is none)."""
        return self.request.getfixturevalue("postgres_url")

    def replay_cli(self, config: Path, *raws: bytes) -> list[dict]:
        """`triage replay --config` of `raws` (written as .eml files): its JSON lines."""
        mail = self.tmp / "mail"
        mail.mkdir(exist_ok=True)
        for n, raw in enumerate(raws):
            (mail / f"{n:02d}.eml").write_bytes(raw)
        done = CliRunner().invoke(
            cli,
            ["--log-level", "error", "replay", "--config", str(config), "--json"]
            + ["--now", instants.iso(NOW), str(mail)],
        )
        assert done.exit_code == 0, done.output
        return [json.loads(line) for line in done.output.splitlines() if line.startswith("{")]

    def secret(self, text: str, name: str = "pw") -> Path:
        path = self.tmp / name
        path.write_text(text + "\n")
        path.chmod(0o600)
        return path

    def mailbox_text(self, dc: servers.Dovecot, **keys: object) -> str:
        table: dict[str, object] = {
            "name": "support",
            "host": "127.0.0.1",
            "port": dc.tls_port,
            "tls": "tls",
            "username": "support",
            "password_file": str(self.secret(dc.users["support"])),
            "ca_file": str(dc.ca_file),
            "timeout": 5,
        }
        table.update(keys)
        return "[[mailbox]]\n" + "".join(
            f"{k} = {toml(v)}\n" for k, v in table.items() if v is not None
        )

    def mailbox(self, dc: servers.Dovecot, extra: str = "", **keys: object) -> endpoints.Mailbox:
        return load_config(self.config(self.mailbox_text(dc, **keys) + extra)).mailboxes[0]

    def smtp_text(self, sink: servers.SmtpSink, **keys: object) -> str:
        table: dict[str, object] = {
            "host": "127.0.0.1",
            "port": sink.port,
            "tls": "starttls",
            "username": "relay",
            "password_file": str(self.secret("relay-secret", "smtp-pw")),
            "ca_file": str(sink.ca_file) if sink.ca_file else None,
            "timeout": 5,
        }
        table.update(keys)
        return "[smtp]\n" + "".join(f"{k} = {toml(v)}\n" for k, v in table.items() if v is not None)

    def smtp(self, sink: servers.SmtpSink, **keys: object) -> endpoints.Smtp:
        smtp = load_config(self.config(self.smtp_text(sink, **keys))).smtp
        assert smtp is not None
        return smtp

    # -- Microsoft Graph, through its stand-in (tests/support/graph_standin.py)
    def graph(self):
        from tests.support.graph_drain import standard
        from tests.support.graph_standin import GraphStandIn

        g = GraphStandIn.start(self.tmp / f"standin{len(self.graphs)}")
        self.graphs.append(g)
        standard(g)
        return g

    def graph_text(self, g, section: str = "[[mailbox]]", **keys: object) -> str:
        from tests.support.graph_drain import CLIENT_ID, SECRET, UPN

        table: dict[str, object] = {
            "name": "support" if section == "[[mailbox]]" else None,
            "kind": "graph",
            "tenant_id": g.tenant,
            "client_id": CLIENT_ID,
            "client_secret_file": str(self.secret(SECRET, "graph-secret")),
            "user": UPN,
            "authority_host": g.url,
            "graph_url": g.url + "/v1.0",
            "ca_file": str(g.ca_file),
            "timeout": 5,
        }
        table.update(keys)
        return f"{section}\n" + "".join(
            f"{k} = {toml(v)}\n" for k, v in table.items() if v is not None
        )

    def graph_mailbox(self, g, **keys: object):
        return load_config(self.config(self.graph_text(g, **keys))).graph_mailboxes[0]

    # -- the daemon, in this process, driven one part at a time
    def daemon(self, config_path: Path):
        from triage.service.daemon import Daemon
        from triage.service.notify import Notifier
        from triage.store import contacts as contacts_store

        config = load_config(config_path)
        store = Store(config.db, config.ticket_prefix)
        rules = Rules.load(config, contacts_store.load(store))
        store.close()
        return Daemon(config_path, config, rules, Notifier.from_env())


def toml(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


@pytest.fixture
def env(tmp_path, monkeypatch, make_dovecot, make_smtp_sink, request) -> Env:
    made = Env(tmp_path, monkeypatch, make_dovecot, make_smtp_sink)
    made.request = request
    yield made
    for g in made.graphs:
        g.stop()


def probe(mb: endpoints.Mailbox) -> probes.Probe:
    return asyncio.run(probes.mailbox(mb))


def relay(smtp: endpoints.Smtp) -> probes.Probe:
    return asyncio.run(probes.relay(smtp))


def outbox(store: Store) -> list[tuple[str, str]]:
    return store.conn.execute("SELECT to_addr, raw FROM outbox ORDER BY id").fetchall()


def request(**extra: str) -> bytes:
    return human(**extra)


# --------------------------------------------------------------------------- [identity]


@effect("identity.domains")
def _domains(env: Env) -> None:
    _, store = env.triage('[identity]\ndomains = ["desk.example"]\n', request())
    ((to, raw),) = outbox(store)
    assert "Message-ID: <T-000001." in raw and "@desk.example>" in raw
    assert "From: support@desk.example" in raw  # the default support address follows


@effect("identity.support_address")
def _support_address(env: Env) -> None:
    _, store = env.triage('[identity]\nsupport_address = "help@msp.example"\n', request())
    ((_to, raw),) = outbox(store)
    assert "From: help@msp.example\r\n" in raw


@effect("identity.display_name")
def _display_name(env: Env) -> None:
    import email
    import email.policy

    _, store = env.triage('[identity]\ndisplay_name = "Example IT, Service Desk"\n', request())
    ((_to, raw),) = outbox(store)
    assert 'From: "Example IT, Service Desk" <support@triage.invalid>\r\n' in raw
    env.db.unlink()
    _, store = env.triage(
        '[identity]\ndisplay_name = "Müller & Söhne IT-Service"\n', request(), name="utf8.toml"
    )
    ((_to, raw),) = outbox(store)
    head = raw.split("\r\n\r\n", 1)[0]
    assert head.isascii() and "From: =?utf-8?" in head  # RFC 2047, never raw UTF-8
    parsed = email.message_from_string(raw, policy=email.policy.default)
    assert parsed["From"].addresses[0].display_name == "Müller & Söhne IT-Service"
    assert parsed["From"].addresses[0].addr_spec == "support@triage.invalid"


@effect("identity.ticket_prefix")
def _ticket_prefix(env: Env) -> None:
    (d,), store = env.triage('[identity]\nticket_prefix = "HD-"\n', request())
    assert d.ticket == "HD-000001"
    assert "[#HD-000001]" in outbox(store)[0][1]


@effect("identity.authserv_ids")
def _authserv_ids(env: Env) -> None:
    # The topmost Authentication-Results says the From failed DMARC. By default the topmost
    # header is believed (our boundary added it): no acknowledgement to a forged sender.
    # Named authserv_ids that are not its author make it a header anyone could have written.
    mail = request(Authentication_Results="mx.msp.example; dmarc=fail header.from=acme.example")
    (believed,), _ = env.triage("", mail, name="plain.toml")
    env.db.unlink()
    (foreign,), _ = env.triage('[identity]\nauthserv_ids = ["mx.corp.example"]\n', mail)
    assert (believed.auto_reply, foreign.auto_reply) == (False, True)
    assert "failed authentication" in (believed.reply_suppressed or "")


FORWARD = (
    "Please have a look.\n\n---------- Forwarded message ---------\n"
    "From: Jane Doe <jane.doe@acme.example>\nSubject: printer\n\nThe printer is jammed.\n"
)


@effect("identity.agents")
def _agents(env: Env) -> None:
    mail = request(From="Alice <alice@partner.example>", Subject="Fwd: printer", body=FORWARD)
    (plain,), _ = env.triage("", mail, name="plain.toml")
    assert plain.requester == "alice@partner.example"
    env.db.unlink()
    (d,), _ = env.triage('[identity]\nagents = ["alice@partner.example"]\n', mail)
    assert (d.requester, d.forwarded_by) == ("jane.doe@acme.example", "alice@partner.example")


# --------------------------------------------------------------------------- [[queue]]

QUEUE = '[[queue]]\nname = "urgent"\naddress = "urgent@msp.example"\n'


@effect("queue.name", "queue.address")
def _queue(env: Env) -> None:
    to_queue = request(To="urgent@msp.example", Message_ID="<q1@x>")
    elsewhere = request(To="support@msp.example", Message_ID="<q2@x>")
    (queued, other), store = env.triage(QUEUE, to_queue, elsewhere)
    assert (queued.queue, other.queue) == ("urgent", None)
    rows = store.conn.execute("SELECT queue FROM tickets ORDER BY id").fetchall()
    assert rows == [("urgent",), (None,)]


@effect("queue.priority")
def _queue_priority(env: Env) -> None:
    mail = request(To="urgent@msp.example")
    (plain,), _ = env.triage(QUEUE, mail, name="plain.toml")
    env.db.unlink()
    (forced,), _ = env.triage(QUEUE + 'priority = "P1"\n', mail)
    assert plain.priority == "P3" and forced.priority == "P1"


@effect("queue.plan")
def _queue_plan(env: Env) -> None:
    mail = request(To="urgent@msp.example")
    (plain,), _ = env.triage(QUEUE, mail, name="plain.toml")
    env.db.unlink()
    (planned,), _ = env.triage(QUEUE + 'plan = "premium"\n', mail)
    assert plain.deadline.plan == "standard" and planned.deadline.plan == "premium"
    assert planned.due != plain.due


# --------------------------------------------------------------------------- [rules] [store]


@effect("rules.dir")
def _rules_dir(env: Env) -> None:
    rules = env.tmp / "rules"
    shutil.copytree(ROOT / "rules", rules)
    with (rules / "filters.toml").open("a", encoding="utf-8") as fh:
        fh.write(
            '\n[[rule]]\nid = "local-digest"\nfield = "subject"\ntest = "matches"\n'
            'phrase = "weekly digest"\nsource = "our own rule"\n'
        )
    mail = request(Subject="Your weekly digest")
    (plain,), _ = env.triage("", mail, name="plain.toml")
    env.db.unlink()
    (d,), _ = env.triage(f'[rules]\ndir = "{rules}"\n', mail)
    assert plain.action == "ticket" and (d.action, d.reason) == ("filtered", "local-digest")


@effect("store.db")
def _store_db(env: Env) -> None:
    env.triage('[store]\ndb = "elsewhere/tickets.db"\n', request())  # relative to the config
    assert Store(env.tmp / "elsewhere" / "tickets.db").conn.execute(
        "SELECT number FROM tickets"
    ).fetchall() == [("T-000001",)]
    assert not env.db.exists()


def _postgres_tickets(url: str, password: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(url, password=password) as conn:
        return conn.execute("SELECT number, requester FROM tickets ORDER BY id").fetchall()


@effect("store.url", "store.password_file", "store.files")
def _store_url(env: Env) -> None:
    from tests.support.postgres import PASSWORD

    url = env.postgres()
    secret = env.secret(PASSWORD, "pg-password")
    config = env.config(
        f'[store]\nurl = "{url}"\npassword_file = "{secret.name}"\nfiles = "kept"\n'
    )
    attached = build(
        {
            "From": "Jane Doe <jane@acme.example>",
            "To": "support@msp.example",
            "Subject": "Screenshot of the error",
            "Date": "Tue, 10 Mar 2026 09:12:00 +0000",
            "Message-ID": "<shot@mail.acme.example>",
            "MIME-Version": "1.0",
            "Content-Type": 'multipart/mixed; boundary="b"',
        },
        "--b\nContent-Type: text/plain\n\nThe error is attached.\n--b\n"
        'Content-Type: application/octet-stream\nContent-Disposition: attachment; filename="e.bin"\n'
        "Content-Transfer-Encoding: base64\n\nAAECAwQFBgcICQ==\n--b--\n",
    )
    (d,) = env.replay_cli(config, attached)
    assert d["ticket"] == "T-000001"
    assert _postgres_tickets(url, PASSWORD) == [("T-000001", "jane@acme.example")]
    assert not env.db.exists() and not (env.tmp / "triage.db").exists()
    sha = hashlib.sha256(bytes(range(10))).hexdigest()
    assert (env.tmp / "kept" / sha[:2] / sha).read_bytes() == bytes(range(10))
    secret.write_text("wrong\n")  # the password is read from the file named
    done = CliRunner().invoke(cli, ["tickets", "--config", str(config)])
    assert done.exit_code == 1 and "password authentication failed" in done.output


@effect("store.password_env", "store.password_credential")
def _store_password_sources(env: Env) -> None:
    from tests.support.postgres import PASSWORD

    url = env.postgres()
    creds = env.tmp / "credentials"
    creds.mkdir()
    (creds / "pg-password").write_text(PASSWORD)
    env.monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    env.monkeypatch.setenv("TRIAGE_TEST_PG", PASSWORD)
    for source in ('password_env = "TRIAGE_TEST_PG"', 'password_credential = "pg-password"'):
        config = env.config(f'[store]\nurl = "{url}"\n{source}\n', name="pg.toml")
        assert env.replay_cli(config, request())[0]["action"] in ("ticket", "duplicate")
        assert _postgres_tickets(url, PASSWORD) == [("T-000001", "jane@acme.example")]
    env.monkeypatch.setenv("TRIAGE_TEST_PG", "wrong")
    config = env.config(f'[store]\nurl = "{url}"\npassword_env = "TRIAGE_TEST_PG"\n', "pg.toml")
    done = CliRunner().invoke(cli, ["tickets", "--config", str(config)])
    assert done.exit_code == 1 and "password authentication failed" in done.output


# --------------------------------------------------------------------------- [sla]


@effect("sla.policy")
def _sla_policy(env: Env) -> None:
    (d,), _ = env.triage('[sla]\npolicy = "msp-p1-p6"\n', request())
    assert d.deadline.policy == "msp-p1-p6"


@effect("sla.plan")
def _sla_plan(env: Env) -> None:
    (plain,), _ = env.triage("", request(), name="plain.toml")
    env.db.unlink()
    (d,), _ = env.triage('[sla]\nplan = "premium"\n', request())
    assert (plain.deadline.plan, d.deadline.plan) == ("standard", "premium")
    assert d.due < plain.due


@effect("sla.timezone")
def _sla_timezone(env: Env) -> None:
    (d,), store = env.triage('[sla]\ntimezone = "Asia/Tokyo"\n', request())
    assert d.timezone == "Asia/Tokyo"
    assert store.conn.execute("SELECT timezone FROM tickets").fetchone() == ("Asia/Tokyo",)
    assert "JST" in body_of(outbox(store)[0][1])  # the deadline as the requester reads it


# --------------------------------------------------------------------------- [contacts]


@effect("contacts.unknown")
def _contacts_unknown(env: Env) -> None:
    (d,), store = env.triage('[contacts]\nunknown = "ignore"\n', request())
    assert (d.action, d.reason) == ("filtered", "unknown-sender")
    assert store.conn.execute("SELECT COUNT(*) FROM tickets").fetchone() == (0,)


@effect("contacts.unknown_ceiling")
def _unknown_ceiling(env: Env) -> None:
    mail = request(From="Someone <someone@stranger.example>", Subject="URGENT: server down")
    (plain,), _ = env.triage("", mail, name="plain.toml")
    env.db.unlink()
    (capped,), _ = env.triage('[contacts]\nunknown_ceiling = "P3"\n', mail)
    assert (plain.priority, capped.priority) == ("P1", "P3")
    assert capped.due > plain.due


@effect("contacts.fuzzy_threshold")
def _fuzzy_threshold(env: Env) -> None:
    env.contacts()
    mail = request(From="Jane Dough <jane.dough@gmail.com>")  # close to Jane Doe, not very
    (plain,), _ = env.triage("", mail, name="plain.toml")
    env.contacts()
    (d,), _ = env.triage(
        "[contacts]\nfuzzy_threshold = 60\n",
        request(From="Jane Dough <jane.dough@gmail.com>", Message_ID="<other@x>"),
    )
    assert plain.match == "none" and d.match == "fuzzy"


@effect("contacts.file")
def _contacts_file(env: Env) -> None:
    shutil.copy(ROOT / "fixtures" / "contacts.csv", env.tmp / "directory.csv")
    path = env.config('[contacts]\nfile = "directory.csv"\n')
    done = CliRunner().invoke(cli, ["contacts", "import", "--config", str(path)])
    assert done.exit_code == 0, done.output
    (d,), _ = env.triage(
        '[contacts]\nfile = "directory.csv"\n', request(From="Jane Doe <jane.doe@acme.example>")
    )
    assert (d.contact, d.match) == ("jane.doe@acme.example", "exact")


@effect("contacts.vip_raise")
def _vip_raise(env: Env) -> None:
    env.contacts()
    mail = request(From="Wile E. Coyote <wile.coyote@acme.example>")  # vip = yes; a P3 text
    (plain,), _ = env.triage("", mail, name="plain.toml")
    (raised,), _ = env.triage(
        "[contacts]\nvip_raise = 2\n",
        request(From="Wile E. Coyote <wile.coyote@acme.example>", Message_ID="<vip2@x>"),
    )
    assert (plain.level, raised.level) == (2, 1)


# --------------------------------------------------------------------------- [replies] [limits]


@effect("replies.never_reply")
def _never_reply(env: Env) -> None:
    mail = request(From="Help Desk <helpdesk@acme.example>")
    (plain,), _ = env.triage("", mail, name="plain.toml")
    env.db.unlink()
    (d,), store = env.triage('[replies]\nnever_reply = ["helpdesk"]\n', mail)
    assert plain.auto_reply and not d.auto_reply
    assert "never-reply list (helpdesk)" in (d.reply_suppressed or "")
    assert outbox(store) == []


@effect("replies.bounce_days")
def _bounce_days(env: Env) -> None:
    store = Store(env.db)
    store.conn.execute(
        "INSERT INTO bounces (address, at, status, permanent) VALUES (?, ?, '5.1.1', 1)",
        ("jane@acme.example", instants.iso(NOW - timedelta(days=10))),
    )
    store.close()
    (plain,), _ = env.triage("", request(), name="plain.toml")
    (d,), _ = env.triage("[replies]\nbounce_days = 3\n", request(Message_ID="<b2@x>"))
    assert "bounced permanently" in (plain.reply_suppressed or "") and d.auto_reply


@effect("replies.max_per_day")
def _max_per_day(env: Env) -> None:
    mails = [request(Message_ID=f"<r{n}@x>", Subject=f"request {n}") for n in range(3)]
    out, _ = env.triage("[replies]\nmax_per_day = 2\n", *mails)
    assert [d.auto_reply for d in out] == [True, True, False]
    assert "limit 2" in (out[2].reply_suppressed or "")


@effect("replies.hold_notice")
def _hold_notice(env: Env) -> None:
    hold = '[contacts]\nunknown = "hold"\n'
    (plain,), _ = env.triage(hold, request(), name="plain.toml")
    env.db.unlink()
    (d,), store = env.triage(hold + "[replies]\nhold_notice = true\n", request())
    assert not plain.auto_reply and d.auto_reply and d.status == "pending-approval"
    assert "not yet on our list of contacts" in body_of(outbox(store)[0][1])


def _ack_parts(raw: str) -> tuple[str, str]:
    """(text part, HTML part) of an acknowledgement, decoded."""
    import email
    import email.policy

    message = email.message_from_string(raw, policy=email.policy.default)
    text, markup = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and markup is not None
    return (
        text.get_content().replace("\r\n", "\n"),
        markup.get_content().replace("\r\n", "\n"),
    )


@effect("replies.signature")
def _signature(env: Env) -> None:
    (plain,), _ = env.triage("", request(), name="plain.toml")
    text0, html0 = _ack_parts(outbox(_)[0][1])
    env.db.unlink()
    signature = '[replies]\nsignature = """\nExample IT <Service Desk>\nMon-Fri 08:00-18:00\n"""\n'
    _, store = env.triage(signature, request())
    text, markup = _ack_parts(outbox(store)[0][1])
    assert text == text0.rstrip("\n") + "\n\nExample IT <Service Desk>\nMon-Fri 08:00-18:00\n"
    assert "<p>Example IT &lt;Service Desk&gt;<br>\nMon-Fri 08:00-18:00</p>" in markup
    assert "<p></p>" not in html0 and "<p></p>" not in markup  # unset values leave no gap


@effect("replies.emergency_phone")
def _emergency_phone(env: Env) -> None:
    _, store = env.triage('[replies]\nemergency_phone = "+44 20 7946 0000"\n', request())
    text, markup = _ack_parts(outbox(store)[0][1])
    assert text.endswith("answer it.\n\nIn an emergency, call +44 20 7946 0000.\n")
    assert "<p>In an emergency, call +44 20 7946 0000.</p>" in markup


@effect("tickets.reopen_days")
def _reopen_days(env: Env) -> None:
    from triage.core import sla
    from triage.service import lifecycle

    def closed_then_answered(text: str, name: str) -> Decision:
        (first,), store = env.triage(text, request(), name=name)
        lifecycle.set_status(
            store,
            sla.load_policies(load_config(None).sla_dir),
            first.ticket or "",
            "closed",
            lifecycle.Actor("test", NOW),
        )
        store.close()
        reply = request(Message_ID="<r2@x>", In_Reply_To="<abc123@mail.acme.example>")
        (d,), _ = env.triage(text, reply, now=NOW + timedelta(days=20), name=name)
        return d

    plain = closed_then_answered("", "plain.toml")
    env.db.unlink()
    d = closed_then_answered("[tickets]\nreopen_days = 30\n", "triage.toml")
    assert (plain.action, plain.linked_ticket) == ("ticket", "T-000001")
    assert (d.action, d.ticket, d.reopened) == ("append", "T-000001", "closed")


@effect("limits.max_bytes")
def _max_bytes(env: Env) -> None:
    big = request(body="x" * 3000 + "\n")
    (plain,), _ = env.triage("", big, name="plain.toml")
    env.db.unlink()
    (d,), _ = env.triage("[limits]\nmax_bytes = 2048\n", big)
    assert plain.action == "ticket" and (d.action, d.reason) == ("quarantined", "too_large")


# --------------------------------------------------------------------------- [[mailbox]]: login


@effect("mailbox.host")
def _mailbox_host(env: Env) -> None:
    dc = env.dovecot()
    assert probe(env.mailbox(dc)).ok
    elsewhere = probe(env.mailbox(dc, host="127.0.0.2"))  # Dovecot listens on 127.0.0.1 only
    assert not elsewhere.ok and "127.0.0.2" in " ".join(elsewhere.found)


@effect("mailbox.port")
def _mailbox_port(env: Env) -> None:
    dc = env.dovecot()
    found = probe(env.mailbox(dc)).found
    assert f"127.0.0.1:{dc.tls_port}" in found[0]
    assert not probe(env.mailbox(dc, port=servers.free_port())).ok


@effect("mailbox.tls")
def _mailbox_tls(env: Env) -> None:
    dc = env.dovecot()
    starttls = probe(env.mailbox(dc, port=dc.port, tls="starttls"))
    assert starttls.ok and "(starttls)" in starttls.found[0]
    assert not probe(env.mailbox(dc, port=dc.port)).ok  # tls: a handshake on the plain port


@effect("mailbox.allow_insecure")
def _mailbox_allow_insecure(env: Env) -> None:
    dc = env.dovecot(tls=False)
    text = env.mailbox_text(dc, port=dc.port, tls="none", ca_file=None)
    with pytest.raises(ConfigError, match="clear text"):
        load_config(env.config(text))
    assert probe(env.mailbox(dc, port=dc.port, tls="none", ca_file=None, allow_insecure=True)).ok


@effect("mailbox.username")
def _mailbox_username(env: Env) -> None:
    dc = env.dovecot(users={"support": "secret", "sales": "secret"})
    assert "logged in as sales" in probe(env.mailbox(dc, username="sales")).found[0]
    assert "auth" in probe(env.mailbox(dc, username="nobody")).found[0]


@effect("mailbox.password_file")
def _mailbox_password_file(env: Env) -> None:
    dc = env.dovecot()
    assert probe(env.mailbox(dc, password_file=str(env.secret("secret", "right")))).ok
    wrong = probe(env.mailbox(dc, password_file=str(env.secret("wrong", "wrong"))))
    assert not wrong.ok and wrong.found[0].startswith("auth:")


@effect("mailbox.password_env")
def _mailbox_password_env(env: Env) -> None:
    dc = env.dovecot()
    env.monkeypatch.setenv("TRIAGE_TEST_PW", "secret")
    assert probe(env.mailbox(dc, password_file=None, password_env="TRIAGE_TEST_PW")).ok
    env.monkeypatch.setenv("TRIAGE_TEST_PW", "wrong")
    assert not probe(env.mailbox(dc, password_file=None, password_env="TRIAGE_TEST_PW")).ok


@effect("mailbox.password_credential")
def _mailbox_password_credential(env: Env) -> None:
    dc = env.dovecot()
    creds = env.tmp / "credentials"
    creds.mkdir()
    (creds / "imap-password").write_text("secret")
    env.monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert probe(env.mailbox(dc, password_file=None, password_credential="imap-password")).ok
    (creds / "imap-password").write_text("wrong")
    assert not probe(env.mailbox(dc, password_file=None, password_credential="imap-password")).ok


@effect("mailbox.oauth_command")
def _mailbox_oauth_command(env: Env) -> None:
    dc = env.dovecot(oauth=True)
    assert dc.tokens is not None
    script = env.tmp / "token.sh"
    script.write_text(f"#!/bin/sh\necho {dc.tokens.issue('support')}\n")
    script.chmod(0o700)
    assert probe(env.mailbox(dc, password_file=None, oauth_command=str(script))).ok
    assert dc.tokens.requests >= 1  # the login was the token's, not a password's


@effect("mailbox.ca_file")
def _mailbox_ca_file(env: Env) -> None:
    dc = env.dovecot()
    assert probe(env.mailbox(dc)).ok
    untrusted = probe(env.mailbox(dc, ca_file=None))  # the system's store knows no such CA
    assert not untrusted.ok and "not trusted" in untrusted.found[0]


@effect("mailbox.timeout")
def _mailbox_timeout(env: Env) -> None:
    dc = env.dovecot()
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never greets
        started = time.monotonic()
        result = probe(env.mailbox(dc, port=silent.getsockname()[1], timeout=0.5))
        assert not result.ok and time.monotonic() - started < 5  # the default waits 30 s


# --------------------------------------------------------------------------- [[mailbox]]: filing


def session_do(mb: endpoints.Mailbox, action: Callable) -> object:
    async def run():
        session = ImapSession(mb)
        try:
            await session.open()
            return await action(session)
        finally:
            await session.close()

    return asyncio.run(run())


def ack_first(outcome: str) -> Callable:
    async def action(session: ImapSession) -> None:
        uids = await session.unprocessed(0)
        await session.ack(uids[:1], outcome)

    return action


@effect("mailbox.folder")
def _mailbox_folder(env: Env) -> None:
    dc = env.dovecot()
    for n in range(2):
        servers.append(dc, "support", "Support", request(Message_ID=f"<f{n}@x>"))
    found = probe(env.mailbox(dc, folder="Support")).found
    assert "Support: 2 message(s)" in found[1]
    assert "INBOX: 0 message(s)" in probe(env.mailbox(dc)).found[1]


@effect("mailbox.after")
def _mailbox_after(env: Env) -> None:
    dc = env.dovecot()
    servers.append(dc, "support", "INBOX", request())
    session_do(env.mailbox(dc, after="delete"), ack_first("processed"))
    assert servers.count(dc, "support", "INBOX") == 0
    assert not any("Processed" in f for f in servers.folders(dc, "support"))


@effect(
    "mailbox.processed_folder",
    "mailbox.filtered_folder",
    "mailbox.review_folder",
    "mailbox.errors_folder",
)
def _mailbox_target_folders(env: Env) -> None:
    dc = env.dovecot()
    targets = {"processed": "Done", "filtered": "Robots", "review": "Held", "errors": "Broken"}
    mb = env.mailbox(dc, **{f"{k}_folder": v for k, v in targets.items()})
    for outcome, folder in targets.items():
        servers.append(dc, "support", "INBOX", request(Message_ID=f"<{outcome}@x>"))
        session_do(mb, ack_first(outcome))
        assert servers.count(dc, "support", folder) == 1, folder
    assert not any("Triage" in f for f in servers.folders(dc, "support"))


@effect("mailbox.keyword")
def _mailbox_keyword(env: Env) -> None:
    dc = env.dovecot()
    servers.append(dc, "support", "INBOX", request())
    session_do(env.mailbox(dc, after="flag", keyword="$Filed"), ack_first("processed"))
    (flags,) = servers.flags(dc, "support", "INBOX").values()
    assert "$Filed" in flags and "$Triaged" not in flags


def waited(mb: endpoints.Mailbox, limit: float) -> float | None:
    """Seconds session.wait() took to return, None when it was still waiting after `limit`."""

    async def action(session: ImapSession) -> float | None:
        started = time.monotonic()
        try:
            await asyncio.wait_for(session.wait(asyncio.Event()), limit)
        except TimeoutError:
            return None
        return time.monotonic() - started

    return session_do(mb, action)


@effect("mailbox.poll_seconds", "mailbox.use_idle")
def _mailbox_polling(env: Env) -> None:
    dc = env.dovecot()
    polled = waited(env.mailbox(dc, use_idle=False, poll_seconds=0.3), 3)
    assert polled is not None and polled < 1.5
    assert waited(env.mailbox(dc, poll_seconds=0.3), 1.5) is None  # use_idle: IDLE, no polling


@effect("mailbox.idle_seconds")
def _mailbox_idle_seconds(env: Env) -> None:
    dc = env.dovecot()
    renewed = waited(env.mailbox(dc, idle_seconds=0.5), 3)
    assert renewed is not None and renewed < 2
    assert waited(env.mailbox(dc), 1.5) is None  # 25 minutes by default


def test_a_flag_change_pushed_during_idle_is_no_new_mail(env):
    """A person marking a message read (the server pushes `* n FETCH (FLAGS ...)`) must not
    end the wait as if mail had come; new mail still does at once."""
    from tests.support import imap as imap_client

    dc = env.dovecot()
    servers.append(dc, "support", "INBOX", request(Message_ID="<old@x>"))
    mb = env.mailbox(dc, idle_seconds=30)

    async def action(session: ImapSession) -> tuple[float | None, float | None]:
        async def wait_for(limit: float) -> float | None:
            started = time.monotonic()
            try:
                await asyncio.wait_for(session.wait(asyncio.Event()), limit)
            except TimeoutError:
                return None
            return time.monotonic() - started

        def mark_read() -> None:
            with imap_client.session(dc, "support") as m:
                m.select("INBOX")
                m.store("1", "+FLAGS", "(\\Seen)")

        assert len(await session.unprocessed(0)) == 1  # as the daemon searches before it waits
        waiting = asyncio.ensure_future(wait_for(2.5))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(mark_read)
        after_flag = await waiting
        waiting = asyncio.ensure_future(wait_for(5))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(
            servers.append, dc, "support", "INBOX", request(Message_ID="<new@x>")
        )
        return after_flag, await waiting

    after_flag, after_mail = session_do(mb, action)
    assert after_flag is None  # still idling after the flag change
    assert after_mail is not None and after_mail < 3


# --------------------------------------------------------------------------- the daemon


def drained(env: Env, config_path: Path) -> Store:
    """The daemon's fetch-analyse-store-file loop over what the mailbox holds, once."""
    daemon_ = env.daemon(config_path)

    async def run() -> None:
        mb = daemon_.config.mailboxes[0]
        session = ImapSession(mb)
        try:
            selected = await session.open()
            uids = await session.unprocessed(0)
            await daemon_._drain(mb, session, selected.uidvalidity, uids, daemon_.log)
        finally:
            await session.close()
            daemon_.analyser.close()

    asyncio.run(run())
    daemon_.store.close()
    return Store(daemon_.config.db)


@effect("mailbox.name")
def _mailbox_name(env: Env) -> None:
    dc = env.dovecot()
    servers.append(dc, "support", "INBOX", request())
    store = drained(env, env.config(env.mailbox_text(dc, name="helpdesk")))
    assert [r["mailbox"] for r in mailbox_state.rows(store)] == ["helpdesk"]
    (source,) = store.conn.execute("SELECT source FROM messages").fetchone()
    assert source.startswith("imap:helpdesk/")


@effect("mailbox.batch")
def _mailbox_batch(env: Env) -> None:
    dc = env.dovecot()
    for n in range(4):
        servers.append(dc, "support", "INBOX", request(Message_ID=f"<b{n}@x>", Subject=f"s{n}"))
    store = drained(env, env.config(env.mailbox_text(dc, batch=2)))
    batches = store.conn.execute(
        "SELECT received_at, COUNT(*) FROM messages GROUP BY received_at ORDER BY received_at"
    ).fetchall()
    assert [n for _, n in batches] == [2, 2]  # one instant per batch written


@effect("daemon.message_timeout")
def _message_timeout(env: Env) -> None:
    dc = env.dovecot()
    rules = rules_with_slow_rule(env.tmp)
    servers.append(dc, "support", "INBOX", request(Subject="a" * 40 + "!"))
    extra = f'[rules]\ndir = "{rules}"\n[daemon]\nmessage_timeout = 0.5\n'
    started = time.monotonic()
    store = drained(env, env.config(env.mailbox_text(dc) + extra))
    assert time.monotonic() - started < 20  # the default is 30 s per message
    assert store.conn.execute("SELECT action, reason FROM messages").fetchall() == [
        ("quarantined", "timeout")
    ]


def failing_after(env: Env, text: str, failures: int) -> tuple[bool, list]:
    daemon_ = env.daemon(env.config(text))
    mb = daemon_.config.mailboxes[0]

    async def run() -> bool:
        health = daemon_.health[mb.name]
        for _ in range(failures):
            await daemon_._failed(mb, health, daemon_.log, "connect", "connection refused")
        return health.failing

    try:
        failing = asyncio.run(run())
        rows = daemon_.store.conn.execute("SELECT to_addr, subject FROM outbox").fetchall()
    finally:
        daemon_.analyser.close()
        daemon_.store.close()
    return failing, rows


@effect("daemon.alert_after_failures", "daemon.operator")
def _alerts(env: Env) -> None:
    dc = env.dovecot()
    base = env.mailbox_text(dc)
    assert failing_after(env, base, 2) == (False, [])  # the default: 5 in a row
    operator = '[daemon]\nalert_after_failures = 2\noperator = "ops@msp.example"\n'
    assert failing_after(env, base + operator, 1) == (False, [])
    failing, rows = failing_after(env, base + operator, 2)
    assert failing and rows == [("ops@msp.example", "triage: mailbox support is failing (connect)")]


def run_until(daemon_, task: Callable, done: Callable[[], bool], limit: float) -> bool:
    """Run one of the daemon's periodic tasks until `done()` or `limit` seconds."""

    async def run() -> bool:
        job = asyncio.create_task(task())
        ended = time.monotonic() + limit
        while not done() and time.monotonic() < ended:
            await asyncio.sleep(0.05)
        daemon_.stop.set()
        await asyncio.wait_for(job, 10)
        return done()

    try:
        return asyncio.run(run())
    finally:
        daemon_.analyser.close()
        daemon_.store.close()


@effect("daemon.stalled_minutes")
def _stalled_minutes(env: Env) -> None:
    dc = env.dovecot()
    for text, expected in (("", False), ("[daemon]\nstalled_minutes = 0.01\n", True)):
        daemon_ = env.daemon(env.config(env.mailbox_text(dc) + text))
        ago = (datetime.now(UTC) - timedelta(seconds=30)).replace(microsecond=0)
        mailbox_state.update(daemon_.store, "support", backlog=3, last_ok_at=instants.iso(ago))
        health = daemon_.health["support"]
        assert run_until(daemon_, daemon_._stall_checks, lambda h=health: h.failing, 2) is expected


@effect("daemon.sla_check_seconds")
def _sla_check_seconds(env: Env) -> None:
    late = request(Subject="URGENT: server down")  # P1 on 2026-03-10: long breached now
    for text, expected in (("", False), ("[daemon]\nsla_check_seconds = 0.2\n", True)):
        env.db.unlink(missing_ok=True)
        daemon_ = env.daemon(env.config(text))

        def breached(daemon_=daemon_) -> bool:
            return bool(
                daemon_.store.conn.execute(
                    "SELECT 1 FROM events WHERE kind = 'sla_breached'"
                ).fetchall()
            )

        async def checks(d=daemon_, text=text) -> None:
            task = asyncio.create_task(d._sla_checks())
            await asyncio.sleep(0.3)  # the first check found nothing to do
            env.triage(text, late)  # then a ticket arrives, already late
            await task

        assert run_until(daemon_, checks, breached, 2.5) is expected


@effect("daemon.backoff_max_seconds")
def _backoff_max(env: Env) -> None:
    dc = env.dovecot()
    closed = servers.free_port()
    counts = []
    for text in ("", "[daemon]\nbackoff_max_seconds = 0.1\n"):
        daemon_ = env.daemon(env.config(env.mailbox_text(dc, port=closed) + text))
        mb = daemon_.config.mailboxes[0]
        run_until(daemon_, lambda d=daemon_, m=mb: d._mailbox(m), lambda: False, 1.5)
        counts.append(daemon_.health["support"].failures)
    assert counts[0] <= 3 and counts[1] >= 6, counts


@effect("daemon.max_imap_connections")
def _max_imap_connections(env: Env) -> None:
    from tests.support import imap
    from tests.support.daemon import mailbox_tables

    users = ["ann", "bob", "cid"]
    dc = env.dovecot(users={u: f"pw-{u}" for u in users})
    turn = {"polled", "connecting", "fetching"}  # between turns, or in one
    for text, most, states in (
        ("", 3, {"idle"}),  # under the bound: a connection each, IDLE
        ("[daemon]\nmax_imap_connections = 1\n", 1, turn),  # one, taken in turn
    ):
        mids = [f"<{u}.{most}@acme.example>" for u in users]
        for user, mid in zip(users, mids, strict=True):
            imap.append(dc, user, "INBOX", human(Message_ID=mid, Subject=f"For {user}"))
        tables = mailbox_tables(env.tmp / "mb", dc, users, poll_seconds=0.2)
        daemon_ = env.daemon(env.config(tables + text))
        peak = [0]

        async def run(d=daemon_, peak=peak, mids=mids, states=states) -> None:
            tasks = [asyncio.create_task(d._mailbox(mb)) for mb in d.config.mailboxes]
            ended = time.monotonic() + 10
            stored = "SELECT COUNT(*) FROM messages WHERE message_id IN (?, ?, ?)"
            before = dc.connections(dc.tls_port)
            while time.monotonic() < ended:
                now = dc.connections(dc.tls_port)
                peak[0] = max(peak[0], len(before & now))  # both reads: open at once
                before = now
                if d.store.conn.execute(stored, mids).fetchone()[0] == 3:
                    break
                await asyncio.sleep(0.002)
            await asyncio.sleep(0.5)  # settled: IDLE, or waiting for the next turn
            seen = {h.state for h in d.health.values()}
            d.stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 10)
            assert seen <= states and seen & {"idle", "polled"}, seen

        try:
            asyncio.run(run())
        finally:
            daemon_.analyser.close()
            daemon_.store.close()
        assert peak[0] == most, (text, peak[0])


@effect("daemon.lease_seconds")
def _lease_seconds(env: Env) -> None:
    """On a PostgreSQL store the daemon holds its SLA timer (and each mailbox) by a lease
    that runs `lease_seconds` from its last renewal."""
    import psycopg

    from tests.support.postgres import PASSWORD
    from triage.core import leases
    from triage.service.daemon import Daemon
    from triage.service.notify import Notifier

    url = env.postgres()
    secret = env.secret(PASSWORD, "pg-password")
    for text, term in (("", 30.0), ("[daemon]\nlease_seconds = 7\n", 7.0)):
        path = env.config(
            f'[store]\nurl = "{url}"\npassword_file = "{secret.name}"\n{text}', name="pg.toml"
        )
        config = load_config(path)
        daemon_ = Daemon(path, config, Rules.load(config, ()), Notifier.from_env())
        seen: list[float] = []

        def held(seen=seen) -> bool:
            with psycopg.connect(url, password=PASSWORD) as conn:
                row = conn.execute("SELECT expires_at FROM leases WHERE name = 'timer:sla'")
                found = row.fetchone()
            if found:
                seen.append((instants.stored(found[0]) - datetime.now(UTC)).total_seconds())
            return bool(seen)

        def sla(d=daemon_):
            return d._leased(leases.timer("sla"), d._sla_checks)

        run_until(daemon_, sla, held, 5)
        assert seen and term - 2 < seen[0] <= term, (text, seen)
        daemon_.lease_store.close()


@effect("daemon.outbox_seconds")
def _outbox_seconds(env: Env) -> None:
    sink = env.sink()
    smtp = f'[smtp]\nhost = "127.0.0.1"\nport = {sink.port}\ntls = "none"\nallow_insecure = true\n'
    sent = []
    for text in ("", "[daemon]\noutbox_seconds = 0.3\n"):
        env.db.unlink(missing_ok=True)
        daemon_ = env.daemon(env.config(smtp + text))
        before = len(sink.messages())

        async def drain(d=daemon_) -> None:
            task = asyncio.create_task(d._outbox())
            await asyncio.sleep(0.3)  # the first round found nothing; no wake-up for this row
            d.store.conn.execute(
                "INSERT INTO outbox (to_addr, subject, raw, status, attempts, created_at)"
                " VALUES ('ops@msp.example', 'hello', ?, 'pending', 0, '2026-03-10T14:30:00Z')",
                (
                    build(
                        {"From": "support@msp.example", "To": "ops@msp.example", "Subject": "hello"}
                    ).decode(),
                ),
            )
            await task

        sent.append(run_until(daemon_, drain, lambda b=before: len(sink.messages()) > b, 2.5))
    assert sent == [False, True]


# --------------------------------------------------------------------------- [smtp]


def sent_through(smtp: endpoints.Smtp, sink: servers.SmtpSink) -> dict:
    from triage.sinks.smtp import Sender

    raw = build({"From": "support@msp.example", "To": "jane@acme.example", "Subject": "hi"})

    async def send() -> None:
        session = Sender(smtp, "support@msp.example").session()
        try:
            await session.send("jane@acme.example", raw)
        finally:
            await session.close()

    asyncio.run(send())
    return sink.envelopes()[-1]


@effect("smtp.host")
def _smtp_host(env: Env) -> None:
    sink = env.sink(tls=True, auth=("relay", "relay-secret"))
    assert relay(env.smtp(sink)).ok
    assert not relay(env.smtp(sink, host="127.0.0.2")).ok


@effect("smtp.port")
def _smtp_port(env: Env) -> None:
    sink = env.sink(tls=True, auth=("relay", "relay-secret"))
    assert sent_through(env.smtp(sink), sink)["rcpt_tos"] == ["jane@acme.example"]
    assert not relay(env.smtp(sink, port=servers.free_port())).ok


@effect("smtp.tls")
def _smtp_tls(env: Env) -> None:
    sink = env.sink(tls=True, auth=("relay", "relay-secret"))
    assert sent_through(env.smtp(sink), sink)["tls"] is True  # starttls
    assert not relay(env.smtp(sink, tls="tls")).ok  # a TLS handshake where STARTTLS is offered


@effect("smtp.allow_insecure")
def _smtp_allow_insecure(env: Env) -> None:
    sink = env.sink()
    keys = {"tls": "none", "username": None, "password_file": None, "ca_file": None}
    with pytest.raises(ConfigError, match="clear text"):
        env.smtp(sink, **keys)
    assert sent_through(env.smtp(sink, allow_insecure=True, **keys), sink)["tls"] is False


@effect("smtp.username", "smtp.password_file")
def _smtp_login(env: Env) -> None:
    sink = env.sink(tls=True, auth=("relay", "relay-secret"))
    assert sent_through(env.smtp(sink), sink)["authenticated"] is True
    wrong = relay(env.smtp(sink, username="someone"))
    assert not wrong.ok and "535" in wrong.found[0]
    bad = relay(env.smtp(sink, password_file=str(env.secret("wrong", "smtp-wrong"))))
    assert not bad.ok and "535" in bad.found[0]


@effect("smtp.password_env")
def _smtp_password_env(env: Env) -> None:
    sink = env.sink(tls=True, auth=("relay", "relay-secret"))
    env.monkeypatch.setenv("TRIAGE_TEST_SMTP", "relay-secret")
    assert relay(env.smtp(sink, password_file=None, password_env="TRIAGE_TEST_SMTP")).ok
    env.monkeypatch.setenv("TRIAGE_TEST_SMTP", "wrong")
    assert not relay(env.smtp(sink, password_file=None, password_env="TRIAGE_TEST_SMTP")).ok


@effect("smtp.password_credential")
def _smtp_password_credential(env: Env) -> None:
    sink = env.sink(tls=True, auth=("relay", "relay-secret"))
    creds = env.tmp / "credentials"
    creds.mkdir()
    (creds / "smtp-password").write_text("relay-secret\n")
    env.monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    keys = {"password_file": None, "password_credential": "smtp-password"}
    assert sent_through(env.smtp(sink, **keys), sink)["authenticated"] is True


@effect("smtp.ca_file")
def _smtp_ca_file(env: Env) -> None:
    sink = env.sink(tls=True, auth=("relay", "relay-secret"))
    assert relay(env.smtp(sink)).ok
    untrusted = relay(env.smtp(sink, ca_file=None))
    assert not untrusted.ok and "not trusted" in untrusted.found[0]


@effect("smtp.timeout")
def _smtp_timeout(env: Env) -> None:
    sink = env.sink(tls=True, auth=("relay", "relay-secret"))
    with socket.create_server(("127.0.0.1", 0)) as silent:
        started = time.monotonic()
        result = relay(env.smtp(sink, port=silent.getsockname()[1], timeout=0.5))
        assert not result.ok and time.monotonic() - started < 5  # the default waits 30 s


# --------------------------------------------------------------------------- Microsoft Graph


def graph_probe(mb) -> probes.Probe:
    return asyncio.run(probes.graph_mailbox(mb))


def rsa_certificate(env: Env) -> tuple[Path, Path]:
    """An RSA certificate and key as docs/graph.md makes them (msal signs with RS256)."""
    import subprocess

    cert, key = env.tmp / "graph-app.pem", env.tmp / "graph-app.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-sha256",
            "-days",
            "2",
            "-nodes",
            "-subj",
            "/CN=triage graph app",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    key.chmod(0o600)
    return cert, key


@effect(
    "mailbox.kind",
    "mailbox.user",
    "mailbox.tenant_id",
    "mailbox.client_id",
    "mailbox.client_secret_file",
    "mailbox.authority_host",
    "mailbox.graph_url",
)
def _graph_mailbox(env: Env) -> None:
    from tests.support.graph_drain import UPN

    g = env.graph()
    g.add_mailbox("other@contoso.example")
    g.deliver(UPN, "inbox", request(Message_ID="<a@x>"), request(Message_ID="<b@x>"))
    found = graph_probe(env.graph_mailbox(g))
    assert found.ok and "inbox: 2 message(s)" in found.found, found
    assert f"{UPN} through {g.url}/v1.0" in found.found  # graph_url (and authority_host)
    other = graph_probe(env.graph_mailbox(g, user="other@contoso.example"))
    assert other.ok and "inbox: 0 message(s)" in other.found
    tenant = graph_probe(env.graph_mailbox(g, tenant_id="0" * 8 + "-0000-0000-0000-" + "0" * 12))
    assert not tenant.ok and "AADSTS" in tenant.found[0]
    client = graph_probe(env.graph_mailbox(g, client_id="1" * 8 + "-1111-1111-1111-" + "1" * 12))
    assert not client.ok and "AADSTS700016" in client.found[0]
    wrong = env.secret("not the secret", "graph-wrong")
    secret = graph_probe(env.graph_mailbox(g, client_secret_file=str(wrong)))
    assert not secret.ok and "AADSTS7000215" in secret.found[0]
    with pytest.raises(ConfigError, match="host"):  # without kind: an IMAP table
        env.graph_mailbox(g, kind=None)


@effect("mailbox.client_secret_env", "mailbox.client_secret_credential")
def _graph_secret_sources(env: Env) -> None:
    from tests.support.graph_drain import SECRET

    g = env.graph()
    env.monkeypatch.setenv("TRIAGE_EFFECT_GRAPH", SECRET)
    by_env = env.graph_mailbox(g, client_secret_file=None, client_secret_env="TRIAGE_EFFECT_GRAPH")
    assert graph_probe(by_env).ok
    creds = env.tmp / "creds"
    creds.mkdir()
    (creds / "graph-secret").write_text(SECRET + "\n")
    env.monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    by_credential = env.graph_mailbox(
        g, client_secret_file=None, client_secret_credential="graph-secret"
    )
    assert graph_probe(by_credential).ok
    env.monkeypatch.delenv("TRIAGE_EFFECT_GRAPH")
    gone = graph_probe(by_env)
    assert not gone.ok and gone.found[0].startswith("secret:")


@effect(
    "mailbox.certificate_file",
    "mailbox.certificate_key_file",
    "mailbox.certificate_key_env",
    "mailbox.certificate_key_credential",
)
def _graph_certificate(env: Env) -> None:
    from tests.support.graph_drain import CLIENT_ID

    g = env.graph()
    cert, key = rsa_certificate(env)
    g.add_app(CLIENT_ID, certificate=cert.read_text())
    env.monkeypatch.setenv("TRIAGE_EFFECT_KEY", key.read_text())
    creds = env.tmp / "creds"
    creds.mkdir()
    (creds / "graph-key").write_text(key.read_text())
    env.monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    for source in (
        {"certificate_key_file": str(key)},
        {"certificate_key_env": "TRIAGE_EFFECT_KEY"},
        {"certificate_key_credential": "graph-key"},
    ):
        mb = env.graph_mailbox(g, client_secret_file=None, certificate_file=str(cert), **source)
        assert mb.credentials.certificate_file == str(cert)
        found = graph_probe(mb)
        assert found.ok, (source, found)
    other, _ = rsa_certificate(env)  # a certificate the app does not know
    refused = graph_probe(
        env.graph_mailbox(
            g, client_secret_file=None, certificate_file=str(other), certificate_key_file=str(key)
        )
    )
    assert not refused.ok


@effect("mailbox.category")
def _graph_category(env: Env) -> None:
    from tests.support.graph_drain import UPN
    from triage.sources.graph import GraphSession

    g = env.graph()
    g.deliver(UPN, "inbox", request())

    async def file_first() -> None:
        session = GraphSession(env.graph_mailbox(g, after="category", category="Done"))
        try:
            await session.open()
            async for page in session.changes(None):
                await session.ack(list(page.ids), "processed")
        finally:
            await session.close()

    asyncio.run(file_first())
    (message,) = g.folder(UPN, "inbox")["messages"]
    assert message["categories"] == ["Done"]


@effect("mailbox.notify_url", "mailbox.notify_listen")
def _graph_notifications(env: Env) -> None:
    from tests.support.net import free_port
    from triage.sources.graph import GraphSession

    g = env.graph()
    port = free_port()
    url = f"http://127.0.0.1:{port}/graph/notify"
    text = env.graph_text(g, notify_url=url, notify_listen=f"127.0.0.1:{port}")
    daemon_ = env.daemon(env.config(text))
    mb = daemon_.config.graph_mailboxes[0]

    async def run() -> list[dict]:
        session = GraphSession(mb)
        notes = keeper = None
        try:
            await session.open()
            notes, keeper = await daemon_._notifications(mb, session, daemon_.log)
            for _ in range(100):
                if g.subscriptions():
                    break
                await asyncio.sleep(0.05)
            return g.subscriptions()
        finally:
            daemon_.stop.set()
            if keeper is not None:
                keeper.cancel()
            if notes is not None:
                await notes.stop()
            await session.close()
            daemon_.analyser.close()
            daemon_.store.close()

    (sub,) = asyncio.run(run())
    assert sub["notificationUrl"] == url  # Graph validated our endpoint at notify_listen


def graph_sent(env: Env, g, text: str) -> list[bytes]:
    """One acknowledgement through the sender `text` configures; what reached sendMail."""
    from tests.support.graph_drain import UPN
    from triage.sinks import outbox as outbox_mod

    text += f'[identity]\nsupport_address = "{UPN}"\n'
    config = load_config(env.config(text))
    sender = outbox_mod.sender_for(config)
    raw = f"From: {UPN}\r\nTo: jane@acme.example\r\nSubject: ack\r\n\r\nhello\r\n".encode()

    async def send() -> None:
        session = sender.session()
        try:
            await session.send("jane@acme.example", raw)
        finally:
            await session.close()

    before = len(g.sent(UPN))
    asyncio.run(send())
    return g.sent(UPN)[before:]


@effect("smtp.kind", "smtp.mailbox")
def _graph_smtp_mailbox(env: Env) -> None:
    g = env.graph()
    text = env.graph_text(g) + '[smtp]\nkind = "graph"\nmailbox = "support"\n'
    assert load_config(env.config(text)).smtp is None  # no SMTP relay
    assert len(graph_sent(env, g, text)) == 1
    with pytest.raises(ConfigError, match="smtp.mailbox"):
        load_config(env.config(env.graph_text(g) + '[smtp]\nkind = "graph"\nmailbox = "x"\n'))


@effect(
    "smtp.user",
    "smtp.tenant_id",
    "smtp.client_id",
    "smtp.client_secret_file",
    "smtp.client_secret_env",
    "smtp.client_secret_credential",
    "smtp.certificate_file",
    "smtp.certificate_key_file",
    "smtp.certificate_key_env",
    "smtp.certificate_key_credential",
    "smtp.authority_host",
    "smtp.graph_url",
)
def _graph_smtp_spelled_out(env: Env) -> None:
    from tests.support.graph_drain import CLIENT_ID, SECRET, UPN

    g = env.graph()
    assert len(graph_sent(env, g, env.graph_text(g, "[smtp]"))) == 1
    env.monkeypatch.setenv("TRIAGE_EFFECT_GRAPH", SECRET)
    creds = env.tmp / "creds"
    creds.mkdir()
    (creds / "graph-secret").write_text(SECRET + "\n")
    cert, key = rsa_certificate(env)
    (creds / "graph-key").write_text(key.read_text())
    env.monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    env.monkeypatch.setenv("TRIAGE_EFFECT_KEY", key.read_text())
    g.add_app(CLIENT_ID, certificate=cert.read_text())
    for source in (
        {"client_secret_env": "TRIAGE_EFFECT_GRAPH"},
        {"client_secret_credential": "graph-secret"},
        {"certificate_file": str(cert), "certificate_key_file": str(key)},
        {"certificate_file": str(cert), "certificate_key_env": "TRIAGE_EFFECT_KEY"},
        {"certificate_file": str(cert), "certificate_key_credential": "graph-key"},
    ):
        text = env.graph_text(g, "[smtp]", client_secret_file=None, **source)
        assert len(graph_sent(env, g, text)) == 1, source
    g.add_mailbox("other@contoso.example")
    text = env.graph_text(g, "[smtp]", user="other@contoso.example")
    config = load_config(env.config(text))
    assert config.graph_sending is not None and config.graph_sending.user != UPN
    wrong_tenant = env.graph_text(g, "[smtp]", tenant_id="0" * 8 + "-0000-0000-0000-" + "0" * 12)
    with pytest.raises(Exception, match="AADSTS"):
        graph_sent(env, g, wrong_tenant)


def _scrape(port: int) -> str | None:
    """The text at http://127.0.0.1:PORT/metrics, or None when nothing answers there."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode("utf-8")
    except (urllib.error.URLError, ConnectionError):
        return None


@effect("daemon.metrics_listen")
def _metrics_listen(env: Env) -> None:
    """The real daemon serves its database's metrics while it runs, and only then."""
    from prometheus_client.parser import text_string_to_metric_families

    _, store = env.triage("", request(Subject="URGENT: server down"))  # one open ticket
    store.close()
    port = servers.free_port()
    for text, served in (("", False), (f'[daemon]\nmetrics_listen = "127.0.0.1:{port}"\n', True)):
        daemon_ = env.daemon(env.config(text))

        async def scrape_while_running(d=daemon_) -> str | None:
            running = asyncio.create_task(d.run())
            await asyncio.sleep(0.3)  # the daemon has started its tasks
            got = await asyncio.to_thread(_scrape, port)
            d.stop.set()
            await asyncio.wait_for(running, 30)
            return got

        got = asyncio.run(scrape_while_running())
        assert (got is not None) is served, text
        if served:
            assert got is not None
            values = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(got)
                for s in family.samples
            }
            assert values[("triage_database_up", ())] == 1
            assert sum(v for (n, _), v in values.items() if n == "triage_tickets_open") == 1
            assert values[("triage_messages_total", (("action", "ticket"), ("reason", "")))] == 1
        assert _scrape(port) is None  # closed when the daemon stopped


# --------------------------------------------------------------------------- the table


ROWS = {fn: "+".join(k for k in sorted(EFFECTS) if EFFECTS[k] is fn) for fn in EFFECTS.values()}


@pytest.mark.parametrize("row", list(ROWS), ids=list(ROWS.values()))
def test_setting_has_its_effect(row, env):
    """One row (for one key, or for a few keys that only act together)."""
    row(env)


def test_every_key_is_documented():
    """docs/configuration.md names every key, in its section's part of the page."""
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    parts = {}
    for block in page.split("\n## ")[1:]:
        heading, _, text = block.partition("\n")
        for section in SCHEMA:
            if f"`[{section}]`" in heading or f"`[[{section}]]`" in heading:
                parts[section] = text
    missing = []
    for key in sorted(schema_keys()):
        section, name = key.split(".")
        text = parts.get(section, "")
        if f"`{key}`" not in page and f"`{name}`" not in text:
            missing.append(key)
    assert not missing, f"keys not in docs/configuration.md: {missing}"
