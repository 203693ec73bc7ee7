"""Every `[[sink]]` key does something: one row per key, each asserting an effect.

The sink half of tests/test_config_effects.py (whose `test_every_key_has_a_row` counts these
rows too). Each row writes a configuration file with the key set to something other than its
default and checks what changes, through the same paths an operator uses: what `triage
replay --sinks-dir` says each sink would receive (request line, headers, body), or what a
real drain round sends to a receiver on 127.0.0.1 (a signed-webhook receiver, a chat
receiver, the ConnectWise stand-in), or when and how often it is sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.servers import make_cert
from tests.support.connectwise_standin import (
    CLIENT_ID,
    COMPANY_ID,
    PRIVATE_KEY,
    PUBLIC_KEY,
    ConnectWiseStandIn,
)
from tests.support.http_receiver import HttpReceiver, Reply
from triage.cli import cli
from triage.config import ConfigError, load_config
from triage.core.pipeline import Rules, analyse
from triage.engine.batch import run_batch
from triage.sinks.config import sink_keys
from triage.sinks.webhook import new_secret
from triage.store import contacts as contacts_store
from triage.store.sqlite import Store

from .conftest import FIXTURES, ROOT, human
from .test_sink_drainer import NOW, Clock, drain_once, row

SECRET = new_secret(b"k" * 32)
OTHER = new_secret(b"o" * 32)
SINK_EFFECTS: dict[str, Callable[[World], None]] = {}
PLAIN = FIXTURES / "01-plain-text-request.eml"  # P3, from a domain contact
URGENT = FIXTURES / "12-severity1-subject.eml"  # P1
REPLY = FIXTURES / "64-reply-in-reply-to.eml"  # appended to 01's ticket


def effect(*keys: str):
    def register(fn: Callable[[World], None]) -> Callable[[World], None]:
        for key in keys:
            assert f"sink.{key}" not in SINK_EFFECTS, key
            SINK_EFFECTS[f"sink.{key}"] = fn
        return fn

    return register


def toml(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


class World:
    """One row's folder: a configuration with sinks, the mail, the drainer."""

    def __init__(self, tmp: Path, monkeypatch) -> None:
        self.tmp, self.monkeypatch = tmp, monkeypatch
        self.db = tmp / "t.db"
        self.n = 0

    def secret(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.write_text(text + "\n")
        path.chmod(0o600)
        return name

    def config(self, *sinks: dict, extra: str = "") -> Path:
        self.n += 1
        path = self.tmp / f"triage{self.n}.toml"
        text = f'[store]\ndb = "{self.db}"\n{extra}\n'
        for table in sinks:
            lines = (f"{k} = {toml(v)}\n" for k, v in table.items() if v is not None)
            text += "[[sink]]\n" + "".join(lines)
        path.write_text(text, encoding="utf-8")
        return path

    def webhook(self, **over: object) -> dict:
        return {
            "name": "hook",
            "kind": "webhook",
            "url": "https://hooks.example.com/triage",
            "secret_file": self.secret("hook.secret", SECRET),
            "events": ["ticket.created"],
            **over,
        }

    def slack(self, **over: object) -> dict:
        return {
            "name": "chat",
            "kind": "slack",
            "url_file": self.secret("chat.url", "https://hooks.slack.com/services/T/B/x"),
            "events": ["ticket.created"],
            **over,
        }

    def connectwise(self, site: str = "https://cw.example.com", **over: object) -> dict:
        self.monkeypatch.setenv("CW_PUBLIC", PUBLIC_KEY)
        return {
            "name": "psa",
            "kind": "connectwise",
            "site": site,
            "allow_insecure": True,
            "company_id": COMPANY_ID,
            "public_key_env": "CW_PUBLIC",
            "private_key_file": self.secret("cw.key", PRIVATE_KEY),
            "client_id": CLIENT_ID,
            "board": 1,
            "default_company": "Catchall",
            "rate_limit": 100,
            "events": ["ticket.created", "ticket.appended"],
            **over,
        }

    def contacts(self) -> None:
        done = CliRunner().invoke(
            cli,
            ["contacts", "import", "--db", str(self.db), str(ROOT / "fixtures" / "contacts.csv")],
        )
        assert done.exit_code == 0, done.output

    def would_send(self, config: Path, *mails: Path | bytes) -> dict[str, str]:
        """`triage replay --sinks-dir`: file name -> what the sink would receive."""
        folder = self.tmp / f"sinks{self.n}"
        paths = []
        for n, mail in enumerate(mails):
            if isinstance(mail, bytes):
                path = self.tmp / f"mail{self.n}-{n}.eml"
                path.write_bytes(mail)
                mail = path
            paths.append(str(mail))
        done = CliRunner().invoke(
            cli,
            ["--log-level", "warning", "replay", "--config", str(config), "--now"]
            + [NOW.isoformat(), "--sinks-dir", str(folder), *paths],
        )
        assert done.exit_code == 0, done.output
        return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir())}

    def ingest(self, config: Path, *mails: Path | bytes) -> None:
        """As the daemon stores mail: its deliveries queued, due now."""
        settings = load_config(config)
        store = Store(settings.db, settings.ticket_prefix)
        rules = Rules.load(settings, contacts_store.load(store))
        for n, mail in enumerate(mails):
            raw = mail if isinstance(mail, bytes) else mail.read_bytes()
            run_batch(store, rules, [analyse(raw, f"m{n}", rules)], NOW, [raw])
        store.close()


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    return World(tmp_path, monkeypatch)


def test_every_sink_key_has_a_row():
    keys = {f"sink.{k}" for k in sink_keys()}
    assert not sorted(keys - set(SINK_EFFECTS)), "sink keys with no row asserting their effect"
    assert not set(SINK_EFFECTS) - keys, "rows for sink keys the schema no longer has"


# --------------------------------------------------------------------------- who gets what


@effect("name")
def _name(w: World) -> None:
    sent = w.would_send(w.config(w.webhook(name="ops-hook")), PLAIN)
    assert list(sent) == ["0001-ops-hook-ticket.created-T-000001.http"]
    store = Store(w.db)
    assert [r["sink"] for r in store.db.query("SELECT sink FROM deliveries")] == ["ops-hook"]
    store.close()


@effect("kind")
def _kind(w: World) -> None:
    [slack] = w.would_send(w.config(w.slack()), PLAIN).values()
    w.db.unlink()
    [teams] = w.would_send(w.config(w.slack(kind="teams")), PLAIN).values()
    assert '"blocks":' in slack and '"attachments":' not in slack
    assert '"type":"message"' in teams and "AdaptiveCard" in teams


@effect("events")
def _events(w: World) -> None:
    assert len(w.would_send(w.config(w.webhook()), PLAIN, REPLY)) == 1
    w.db.unlink()
    both = w.config(w.webhook(events=["ticket.created", "ticket.appended"]))
    assert [n.split("-", 2)[2] for n in w.would_send(both, PLAIN, REPLY)] == [
        "ticket.created-T-000001.http",
        "ticket.appended-T-000001.http",
    ]


@effect("priorities")
def _priorities(w: World) -> None:
    sent = w.would_send(w.config(w.webhook(priorities=["P1"])), PLAIN, URGENT)
    assert list(sent) == ["0001-hook-ticket.created-T-000002.http"]  # the P1 one only


@effect("queues")
def _queues(w: World) -> None:
    queue = '[[queue]]\nname = "billing"\naddress = "billing@msp.example"\n'
    to_billing = human(To="billing@msp.example", Message_ID="<bill@x>")
    sent = w.would_send(w.config(w.webhook(queues=["billing"]), extra=queue), PLAIN, to_billing)
    [(name, body)] = sent.items()
    assert name.endswith("T-000002.http") and '"queue":"billing"' in body


@effect("vip")
def _vip(w: World) -> None:
    w.contacts()
    vip = human(From="Wile E. Coyote <wile.coyote@acme.example>", Message_ID="<vip@x>")
    sent = w.would_send(w.config(w.webhook(vip="only")), PLAIN, vip)
    [(name, body)] = sent.items()
    assert name.endswith("T-000002.http") and '"vip":true' in body


@effect("zone")
def _zone(w: World) -> None:
    [utc] = w.would_send(w.config(w.slack()), URGENT).values()
    w.db.unlink()
    [tokyo] = w.would_send(w.config(w.slack(zone="Asia/Tokyo")), URGENT).values()
    assert "JST" in tokyo and "JST" not in utc and "UTC" in utc


# --------------------------------------------------------------------------- where it goes


@effect("url")
def _url(w: World) -> None:
    [sent] = w.would_send(w.config(w.webhook(url="https://ops.example.net/in")), PLAIN).values()
    assert sent.startswith("POST https://ops.example.net/in\n")


def _signed_by(w: World, table: dict, right: bool) -> None:
    with HttpReceiver.start(secret=SECRET) as rx:
        config = w.config(w.webhook(url=rx.url, allow_insecure=True, **table))
        w.ingest(config, PLAIN)
        drain_once(config, Clock())
    assert [r.verified for r in rx.requests] == [right]
    assert row(config)["status"] == ("sent" if right else "dead")


@effect("secret_file")
def _secret_file(w: World) -> None:
    _signed_by(w, {"secret_file": w.secret("right", SECRET)}, True)
    w.db.unlink()
    _signed_by(w, {"secret_file": w.secret("wrong", OTHER)}, False)


@effect("secret_env")
def _secret_env(w: World) -> None:
    w.monkeypatch.setenv("HOOK_SECRET", SECRET)
    _signed_by(w, {"secret_file": None, "secret_env": "HOOK_SECRET"}, True)
    w.db.unlink()
    w.monkeypatch.setenv("HOOK_SECRET", OTHER)
    _signed_by(w, {"secret_file": None, "secret_env": "HOOK_SECRET"}, False)


@effect("secret_credential")
def _secret_credential(w: World) -> None:
    creds = w.tmp / "credentials"
    creds.mkdir()
    w.monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    (creds / "hook").write_text(SECRET + "\n")
    _signed_by(w, {"secret_file": None, "secret_credential": "hook"}, True)
    w.db.unlink()
    (creds / "hook").write_text(OTHER + "\n")
    _signed_by(w, {"secret_file": None, "secret_credential": "hook"}, False)


def _chat_reaches(w: World, source: dict, rx: HttpReceiver) -> None:
    config = w.config(w.slack(**{"url_file": None, "allow_insecure": True, **source}))
    w.ingest(config, PLAIN)
    assert drain_once(config, Clock()).sent == 1
    [got] = rx.requests
    assert got.path == "/services/T/B/x" and "T-000001" in got.body.decode()


@effect("url_file")
def _url_file(w: World) -> None:
    with HttpReceiver.start(path="/services/T/B/x") as rx:
        _chat_reaches(w, {"url_file": w.secret("rx.url", rx.url)}, rx)


@effect("url_env")
def _url_env(w: World) -> None:
    with HttpReceiver.start(path="/services/T/B/x") as rx:
        w.monkeypatch.setenv("CHAT_URL", rx.url)
        _chat_reaches(w, {"url_env": "CHAT_URL"}, rx)


@effect("url_credential")
def _url_credential(w: World) -> None:
    creds = w.tmp / "credentials"
    creds.mkdir()
    w.monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    with HttpReceiver.start(path="/services/T/B/x") as rx:
        (creds / "chat-url").write_text(rx.url + "\n")
        _chat_reaches(w, {"url_credential": "chat-url"}, rx)


# --------------------------------------------------------------------------- ConnectWise


@effect("site", "codebase")
def _site_codebase(w: World) -> None:
    table = w.connectwise(site="cw.example.org", codebase="v2025_1")
    [sent] = w.would_send(w.config(table), PLAIN).values()
    assert sent.startswith("POST https://cw.example.org/v2025_1/apis/3.0/service/tickets\n")


def _psa(w: World, over: dict) -> tuple[int, str]:
    """(tickets the stand-in holds, the delivery's status) after one drain round."""
    with ConnectWiseStandIn.start() as cw:
        config = w.config(w.connectwise(site=cw.site, **over))
        w.ingest(config, PLAIN)
        drain_once(config, Clock())
        accept = cw.requests[-1].headers.get("accept", "") if cw.requests else ""
        tickets = len(cw.tickets)
    status = row(config)["status"]
    w.db.unlink()
    return tickets, status + " " + accept


# key -> (the right value, a wrong one), as the stand-in checks them
_CREDENTIALS: dict[str, Callable[[World, bool], dict]] = {
    "company_id": lambda w, ok: {"company_id": COMPANY_ID if ok else "othercorp"},
    "client_id": lambda w, ok: {"client_id": CLIENT_ID if ok else "0000-unknown"},
    "public_key": lambda w, ok: {
        "public_key_env": None,
        "public_key": PUBLIC_KEY if ok else "wrongpublic",
    },
    "public_key_file": lambda w, ok: {
        "public_key_env": None,
        "public_key_file": w.secret("pub", PUBLIC_KEY if ok else "wrongpublic"),
    },
    "public_key_env": lambda w, ok: (
        w.monkeypatch.setenv("CW_PUB2", PUBLIC_KEY if ok else "wrongpublic")
        or {"public_key_env": "CW_PUB2"}
    ),
    "public_key_credential": lambda w, ok: _credential(
        w, "cw-public", PUBLIC_KEY if ok else "wrongpublic", public_key_env=None
    ),
    "private_key_file": lambda w, ok: {
        "private_key_file": w.secret("priv", PRIVATE_KEY if ok else "wrongprivate")
    },
    "private_key_env": lambda w, ok: (
        w.monkeypatch.setenv("CW_PRIVATE", PRIVATE_KEY if ok else "wrongprivate")
        or {"private_key_file": None, "private_key_env": "CW_PRIVATE"}
    ),
    "private_key_credential": lambda w, ok: _credential(
        w, "cw-private", PRIVATE_KEY if ok else "wrongprivate", private_key_file=None
    ),
}


def _credential(w: World, name: str, value: str, **over: object) -> dict:
    creds = w.tmp / "credentials"
    creds.mkdir(exist_ok=True)
    w.monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    (creds / name).write_text(value + "\n")
    key = "public_key_credential" if "public" in name else "private_key_credential"
    return {key: name, **over}


def _credential_row(key: str) -> Callable[[World], None]:
    def row_(w: World) -> None:
        tickets, status = _psa(w, _CREDENTIALS[key](w, True))
        assert tickets == 1 and status.startswith("sent"), status
        tickets, status = _psa(w, _CREDENTIALS[key](w, False))
        assert tickets == 0 and status.startswith("dead"), status  # 401: permanent

    return row_


for _key in _CREDENTIALS:
    effect(_key)(_credential_row(_key))


@effect("api_version")
def _api_version(w: World) -> None:
    _tickets, status = _psa(w, {"api_version": "2023.2"})
    assert status.endswith("version=2023.2"), status
    _tickets, status = _psa(w, {})
    assert status.endswith("version=2022.1"), status


def _ticket_body(w: World, **over: object) -> dict:
    [sent] = w.would_send(w.config(w.connectwise(**over)), PLAIN).values()
    if w.db.exists():
        w.db.unlink()
    return json.loads(sent.split("\n\n", 1)[1])


@effect("board")
def _board(w: World) -> None:
    assert _ticket_body(w, board=7)["board"] == {"id": 7}


@effect("status")
def _status(w: World) -> None:
    assert "status" not in _ticket_body(w)  # the board's default
    assert _ticket_body(w, status=12)["status"] == {"id": 12}


@effect("priority_map")
def _priority_map(w: World) -> None:
    assert "priority" not in _ticket_body(w)  # unmapped: the board's default
    assert _ticket_body(w, priority_map={"P3": 6})["priority"] == {"id": 6}


@effect("company_map", "default_company")
def _companies(w: World) -> None:
    # 01 comes from acme.example, a domain of "Acme Corp" in the directory
    w.contacts()
    body = _ticket_body(w, company_map={"Acme Corp": "AcmeCorp"})
    assert body["company"] == {"identifier": "AcmeCorp"}
    w.contacts()
    assert _ticket_body(w, default_company="Walkins")["company"] == {"identifier": "Walkins"}


@effect("note_type")
def _note_type(w: World) -> None:
    def note(**over: object) -> dict:
        sent = w.would_send(w.config(w.connectwise(**over)), PLAIN, REPLY)
        w.db.unlink()
        [appended] = [v for k, v in sent.items() if "ticket.appended" in k]
        return json.loads(appended.split("\n\n", 1)[1])

    assert note()["detailDescriptionFlag"] is True
    internal = note(note_type="internal")
    assert internal["internalAnalysisFlag"] is True and not internal.get("detailDescriptionFlag")


# --------------------------------------------------------------------------- mail to on-call


@effect("to")
def _to(w: World) -> None:
    smtp = '[smtp]\nhost = "127.0.0.1"\nport = 2525\ntls = "none"\nallow_insecure = true\n'
    table = {"name": "oncall", "kind": "email", "to": ["duty@msp.example"]}
    table["events"] = ["ticket.created"]
    [sent] = w.would_send(w.config(table, extra=smtp), URGENT).values()
    assert sent.startswith("To: duty@msp.example\nSubject: ")


# --------------------------------------------------------------------------- how it is sent


@effect("timeout")
def _timeout(w: World) -> None:
    with HttpReceiver.start(secret=SECRET) as rx:
        rx.then(Reply.hang())
        config = w.config(w.webhook(url=rx.url, allow_insecure=True, timeout=1))
        w.ingest(config, PLAIN)
        started = time.monotonic()
        assert drain_once(config, Clock()).retried == 1
        assert time.monotonic() - started < 5  # the default would wait 15 s
        rx.release()
    assert "no answer" in row(config)["last_error"]


@effect("rate_limit")
def _rate_limit(w: World) -> None:
    many = [human(Message_ID=f"<r{n}@x>", Subject=f"Printer {n} jammed") for n in range(4)]
    with HttpReceiver.start(secret=SECRET) as rx:
        config = w.config(w.webhook(url=rx.url, allow_insecure=True, rate_limit=4))
        w.ingest(config, *many)
        drain_once(config, Clock())
        times = sorted(r.at for r in rx.requests)
    assert len(times) == 4 and times[-1] - times[0] >= 3 * 0.25 - 0.05


@effect("max_attempts")
def _max_attempts(w: World) -> None:
    with HttpReceiver.start(secret=SECRET) as rx:
        rx.always(Reply.status(503, "down"))
        config = w.config(w.webhook(url=rx.url, allow_insecure=True, max_attempts=2))
        w.ingest(config, PLAIN)
        drain_once(config, Clock())
        assert drain_once(config, Clock(NOW + timedelta(minutes=1))).dead == 1
    assert row(config)["last_error"].startswith("gave up after 2 attempts")
    assert len(rx.requests) == 2


@effect("ca_file")
def _ca_file(w: World) -> None:
    cert, key_file = make_cert(w.tmp / "tls", "receiver")
    with HttpReceiver.start(secret=SECRET, tls=(cert, key_file)) as rx:
        untrusted = w.config(w.webhook(url=rx.url))
        w.ingest(untrusted, PLAIN)
        assert drain_once(untrusted, Clock()).retried == 1
        assert "CERTIFICATE_VERIFY_FAILED" in row(untrusted)["last_error"]
        w.db.unlink()
        trusted = w.config(w.webhook(url=rx.url, ca_file=str(cert)))
        w.ingest(trusted, PLAIN)
        assert drain_once(trusted, Clock()).sent == 1
    assert [r.verified for r in rx.requests][-1] is True


@effect("allow_insecure")
def _allow_insecure(w: World) -> None:
    with HttpReceiver.start(secret=SECRET) as rx:
        with pytest.raises(ConfigError, match="allow_insecure"):
            load_config(w.config(w.webhook(url=rx.url)))
        config = w.config(w.webhook(url=rx.url, allow_insecure=True))
        w.ingest(config, PLAIN)
        assert drain_once(config, Clock()).sent == 1
    assert [r.verified for r in rx.requests] == [True]


@pytest.mark.parametrize("key", sorted(SINK_EFFECTS))
def test_sink_setting_has_its_effect(key, world):
    SINK_EFFECTS[key](world)
