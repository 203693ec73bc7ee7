"""The configuration file: every value read is used, and every value out of range is refused."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from triage import instants
from triage.config import ConfigError, load_config
from triage.core.pipeline import Action, Decision, Rules, analyse
from triage.engine.batch import run_batch
from triage.store.sqlite import Store

from .conftest import human

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)


def write(tmp_path: Path, text: str, name: str = "triage.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def triaged(config_path: Path, *raws: bytes, now: datetime = NOW) -> tuple[list[Decision], Store]:
    """Each message through the pipeline into the configured database, one commit each."""
    config = load_config(config_path)
    store = Store(config.db, config.ticket_prefix)
    rules = Rules.load(config)
    out = []
    for n, raw in enumerate(raws):
        out += run_batch(store, rules, [analyse(raw, f"m{n}", rules)], now, [raw])
    return out, store


def acks(store: Store) -> list[tuple[str, str]]:
    return store.conn.execute("SELECT to_addr, subject FROM outbox ORDER BY id").fetchall()


def two_requests() -> list[bytes]:
    return [human(Message_ID=f"<r{n}@acme.example>", Subject=f"request {n}") for n in (1, 2)]


@pytest.mark.parametrize(("limit", "acknowledged"), [(None, 2), (1, 1)])
def test_replies_max_per_day_limits_acknowledgements_per_address(tmp_path, limit, acknowledged):
    text = f'[store]\ndb = "{tmp_path / "t.db"}"\n'
    if limit is not None:
        text += f"[replies]\nmax_per_day = {limit}\n"
    out, store = triaged(write(tmp_path, text), *two_requests())
    assert [d.action for d in out] == [Action.TICKET, Action.TICKET]
    assert len(acks(store)) == acknowledged
    if limit is not None:
        assert "limit 1" in (out[1].reply_suppressed or "")


def _bounced(store: Store, address: str, at: datetime) -> None:
    store.conn.execute(
        "INSERT INTO bounces (address, at, status, permanent) VALUES (?, ?, '5.1.1', 1)",
        (address, instants.iso(at)),
    )


@pytest.mark.parametrize(("days", "acknowledged"), [(None, 0), (3, 1)])
def test_replies_bounce_days_is_how_long_a_bounce_silences_an_address(tmp_path, days, acknowledged):
    db = tmp_path / "t.db"
    store = Store(db)
    _bounced(store, "jane@acme.example", NOW - timedelta(days=10))
    store.close()
    text = f'[store]\ndb = "{db}"\n' + (f"[replies]\nbounce_days = {days}\n" if days else "")
    out, store = triaged(write(tmp_path, text), two_requests()[0])
    assert len(acks(store)) == acknowledged


@pytest.mark.parametrize(("notice", "acknowledged"), [(None, []), ("true", ["held"])])
def test_replies_hold_notice_tells_a_held_sender_they_wait_for_approval(
    tmp_path, notice, acknowledged
):
    text = f'[store]\ndb = "{tmp_path / "t.db"}"\n[contacts]\nunknown = "hold"\n'
    if notice:
        text += f"[replies]\nhold_notice = {notice}\n"
    out, store = triaged(write(tmp_path, text), two_requests()[0])
    assert out[0].status == "pending-approval"
    texts = [body_of(r[0]) for r in store.conn.execute("SELECT raw FROM outbox").fetchall()]
    assert ["held" for text in texts if "not yet on our list of contacts" in text] == acknowledged


def body_of(raw: str) -> str:
    """The text part of an acknowledgement, decoded."""
    message = email.message_from_string(raw, policy=email.policy.default)
    part = message.get_body(("plain",))
    assert part is not None
    return " ".join(part.get_content().split())


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[limits]\nmax_bytes = -5\n", "[limits.max_bytes] -5 is outside the range"),
        ("[limits]\nmax_bytes = 0\n", "[limits.max_bytes]"),
        ("[limits]\nmax_bytes = 2000000000000\n", "[limits.max_bytes]"),
        ("[replies]\nmax_per_day = 0\n", "[replies.max_per_day]"),
        ("[replies]\nbounce_days = -1\n", "[replies.bounce_days]"),
        ("[contacts]\nfuzzy_threshold = 101\n", "[contacts.fuzzy_threshold]"),
        ("[contacts]\nfuzzy_threshold = 10\n", "[contacts.fuzzy_threshold]"),
        ('[identity]\nsupport_address = "help desk"\n', "[identity.support_address]"),
        ('[identity]\nagents = ["alice"]\n', "[identity.agents]"),
        ('[identity]\nticket_prefix = "T- "\n', "[identity.ticket_prefix]"),
        ('[identity]\nticket_prefix = ""\n', "[identity.ticket_prefix]"),
        ('[replies]\nnever_reply = [""]\n', "[replies.never_reply]"),
        ('[identity]\ndisplay_name = "Desk\\r\\nBcc: x@evil.example"\n', "[identity.display_name]"),
        ('[identity]\ndisplay_name = "Desk\\nX"\n', "holds a line break"),
        ('[identity]\ndisplay_name = "Desk\\u0007"\n', "[identity.display_name]"),
        (f'[identity]\ndisplay_name = "{"D" * 65}"\n', "more than 64"),
        ('[replies]\nemergency_phone = "call us"\n', "[replies.emergency_phone]"),
        (f'[replies]\nemergency_phone = "{"1" * 41}"\n', "[replies.emergency_phone]"),
        (f'[replies]\nsignature = "{"s" * 1001}"\n', "[replies.signature]"),
        ('[replies]\nsignature = "a\\nb\\nc\\nd\\ne\\nf\\ng\\nh\\ni\\nj\\nk"\n', "more than 10"),
        ('[replies]\nsignature = "a\\rb"\n', "[replies.signature]"),
        ('[store]\ndb = "."\n', "[store.db]"),
    ],
)
def test_values_out_of_range_are_refused_with_file_key_and_fix(tmp_path, text, key):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and key in message and "fix:" in message


def _mailbox(**extra: object) -> str:
    table = {
        "name": "support",
        "host": "imap.example.com",
        "username": "support",
        "password_env": "PW",
        **extra,
    }
    return "[[mailbox]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in table.items())


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (_mailbox(port=99999), "[mailbox[0].port] 99999 is outside the range 1 to 65535"),
        (_mailbox(port=0), "[mailbox[0].port]"),
        (_mailbox(batch=100_000), "[mailbox[0].batch]"),
        (_mailbox(idle_seconds=3600), "[mailbox[0].idle_seconds]"),
        (_mailbox(keyword="two words"), "[mailbox[0].keyword]"),
        (_mailbox(keyword="\\\\Seen"), "[mailbox[0].keyword]"),
        (_mailbox(folder=" "), "[mailbox[0].folder]"),
        (_mailbox(processed_folder=" "), "[mailbox[0].processed_folder]"),
        ('[smtp]\nhost = "smtp.example.com"\nport = 70000\n', "[smtp.port]"),
        ('[daemon]\noperator = "ops"\n', "[daemon.operator]"),
    ],
)
def test_server_settings_out_of_range_are_refused(tmp_path, text, key):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert key in str(caught.value) and "fix:" in str(caught.value)
