"""`triage check --connect` against a private Dovecot and an aiosmtpd relay with AUTH."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from triage.cli import cli

from . import servers
from .conftest import human


def config_for(
    tmp_path: Path,
    imap: servers.Dovecot | None,
    smtp: servers.SmtpSink | None,
    imap_password: str = "secret",
    smtp_password: str = "relay-secret",
    **mailbox: object,
) -> Path:
    text = f'[store]\ndb = "{tmp_path / "t.db"}"\n'
    if imap is not None:
        pw = tmp_path / "imap-password"
        pw.write_text(imap_password + "\n")
        pw.chmod(0o600)
        table = {
            "name": "support",
            "host": "127.0.0.1",
            "port": imap.tls_port,
            "tls": "tls",
            "username": "support",
            "password_file": str(pw),
            "ca_file": str(imap.ca_file),
            "timeout": 5,
            **mailbox,
        }
        text += "[[mailbox]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in table.items())
    if smtp is not None:
        pw = tmp_path / "smtp-password"
        pw.write_text(smtp_password + "\n")
        pw.chmod(0o600)
        text += (
            f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\ntls = "starttls"\n'
            f'username = "relay"\npassword_file = "{pw}"\nca_file = "{smtp.ca_file}"\ntimeout = 5\n'
        )
    path = tmp_path / "triage.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _toml(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return str(value).lower() if isinstance(value, bool) else str(value)


def connect(config: Path):
    return CliRunner().invoke(cli, ["check", "--connect", "--config", str(config)])


@pytest.fixture
def relay(make_smtp_sink):
    return make_smtp_sink(tls=True, auth=("relay", "relay-secret"))


def test_connect_logs_in_and_says_what_it_found(dovecot, relay, tmp_path):
    for n in range(3):
        servers.append(dovecot, "support", "INBOX", human(Message_ID=f"<c{n}@x>"))
    servers.create(dovecot, "support", "Triage.Processed")  # Dovecot's maildir separator
    result = connect(config_for(tmp_path, dovecot, relay))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "mailbox support: ok" in out
    assert f"logged in as support at 127.0.0.1:{dovecot.tls_port} (tls)" in out
    assert "INBOX: 3 message(s)" in out
    assert "capabilities: IDLE MOVE UIDPLUS NAMESPACE" in out
    processed = [line for line in out.splitlines() if "Processed: " in line]
    assert processed and processed[0].strip().endswith("exists")
    assert any(
        "Filtered: missing; created at the daemon's first start" in x for x in out.splitlines()
    )
    assert "smtp: ok" in out and "the relay accepts the login as relay" in out
    assert "SMTPUTF8" in out
    assert out.strip().endswith("ok")
    # read-only: nothing created, moved or flagged
    assert servers.count(dovecot, "support", "INBOX") == 3
    assert not any("Filtered" in f for f in servers.folders(dovecot, "support"))
    assert relay.messages() == []


def test_a_refused_imap_login_fails_with_the_reason(dovecot, relay, tmp_path):
    result = connect(config_for(tmp_path, dovecot, relay, imap_password="wrong"))
    assert result.exit_code == 1
    assert "mailbox support: FAILED" in result.output
    assert "auth: support: login as support refused" in result.output
    assert "smtp: ok" in result.output  # the relay is still reported


def test_a_refused_relay_login_fails_with_the_servers_answer(dovecot, relay, tmp_path):
    result = connect(config_for(tmp_path, dovecot, relay, smtp_password="wrong"))
    assert result.exit_code == 1
    assert "smtp: FAILED" in result.output and "auth: login as relay refused (535" in result.output
    assert "mailbox support: ok" in result.output


def test_a_watched_folder_that_does_not_exist_fails(dovecot, tmp_path):
    result = connect(config_for(tmp_path, dovecot, None, folder="Support"))
    assert result.exit_code == 1 and "cannot select Support" in result.output


def test_an_untrusted_certificate_and_a_closed_port_fail(dovecot, relay, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    wrong_ca, _key = servers.make_cert(other, "other")
    result = connect(config_for(tmp_path, dovecot, None, ca_file=str(wrong_ca)))
    assert result.exit_code == 1 and "tls:" in result.output and "not trusted" in result.output
    result = connect(config_for(tmp_path, dovecot, None, port=servers.free_port()))
    assert result.exit_code == 1 and "connect:" in result.output


def test_polling_and_flag_mode_are_reported(dovecot, tmp_path):
    result = connect(
        config_for(tmp_path, dovecot, None, use_idle=False, poll_seconds=7, after="flag")
    )
    assert result.exit_code == 0, result.output
    assert "new mail is found by polling every 7 s" in result.output
    assert "processed mail is flagged $Triaged and left in INBOX" in result.output
