"""`triage check` without a network: the files the configuration names exist and are safe."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from triage.cli import cli

from .conftest import ROOT


def check(config: Path, *extra: str, env: dict | None = None):
    return CliRunner(env=env).invoke(cli, ["check", "--config", str(config), *extra])


def mailbox(tmp_path: Path, **keys: str) -> Path:
    table = {
        "name": "support",
        "host": "imap.example.com",
        "username": "support",
        **keys,
    }
    config = tmp_path / "triage.toml"
    config.write_text(
        f'[store]\ndb = "{tmp_path / "t.db"}"\n[[mailbox]]\n'
        + "".join(f'{k} = "{v}"\n' for k, v in table.items()),
        encoding="utf-8",
    )
    return config


def secret_file(tmp_path: Path, mode: int, text: str = "secret\n") -> Path:
    path = tmp_path / "imap-password"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_private_password_file_passes(tmp_path):
    config = mailbox(tmp_path, password_file=str(secret_file(tmp_path, 0o600)))
    result = check(config)
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("ok")


@pytest.mark.parametrize(
    ("mode", "text", "problem"),
    [
        (0o644, "secret\n", "is open to every user of this machine (mode -rw-r--r--)"),
        (0o604, "secret\n", "is open to every user"),
        (0o640, "", "is empty"),
    ],
)
def test_a_password_file_open_to_everyone_or_empty_fails(tmp_path, mode, text, problem):
    path = secret_file(tmp_path, mode, text)
    result = check(mailbox(tmp_path, password_file=str(path)))
    assert result.exit_code == 1
    assert f"{path}: [mailbox[0].password_file] {problem}" in result.output
    assert "fix:" in result.output


def test_a_missing_password_file_fails(tmp_path):
    path = tmp_path / "nowhere"
    result = check(mailbox(tmp_path, password_file=str(path)))
    assert result.exit_code == 1
    assert f"{path}: [mailbox[0].password_file] does not exist" in result.output


def test_secrets_this_shell_cannot_see_are_warnings_not_failures(tmp_path):
    env = {"CREDENTIALS_DIRECTORY": None, "TRIAGE_PW": None}
    for keys in ({"password_env": "TRIAGE_PW"}, {"password_credential": "imap-password"}):
        result = check(mailbox(tmp_path, **keys), env=env)
        assert result.exit_code == 0, result.output
        assert "warning" in result.output and "fix:" in result.output


def test_a_credential_missing_from_the_credentials_directory_fails(tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    config = mailbox(tmp_path, password_credential="imap-password")
    result = check(config, env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert (
        result.exit_code == 1 and "imap-password: [mailbox[0].password_credential]" in result.output
    )
    (creds / "imap-password").write_text("secret")
    assert check(config, env={"CREDENTIALS_DIRECTORY": str(creds)}).exit_code == 0


def test_a_token_command_that_is_not_a_program_fails(tmp_path):
    result = check(mailbox(tmp_path, oauth_command=str(tmp_path / "get-token") + " support"))
    assert result.exit_code == 1 and "[mailbox[0].oauth_command]" in result.output


@pytest.mark.parametrize("text", [None, "not a certificate\n"])
def test_a_ca_file_that_is_missing_or_not_a_certificate_fails(tmp_path, text):
    ca = tmp_path / "ca.pem"
    if text is not None:
        ca.write_text(text)
    config = mailbox(tmp_path, password_file=str(secret_file(tmp_path, 0o600)), ca_file=str(ca))
    result = check(config)
    assert result.exit_code == 1 and f"{ca}: [mailbox[0].ca_file]" in result.output


def test_a_ca_file_anyone_may_write_fails(tmp_path):
    from .servers import make_cert

    cert, _key = make_cert(tmp_path)
    cert.chmod(0o666)
    config = mailbox(tmp_path, password_file=str(secret_file(tmp_path, 0o600)), ca_file=str(cert))
    result = check(config)
    assert result.exit_code == 1 and "writable by every user" in result.output
    cert.chmod(0o644)
    assert check(config).exit_code == 0


def test_rules_anyone_may_write_fail(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    config = tmp_path / "triage.toml"
    config.write_text(f'[rules]\ndir = "{rules}"\n', encoding="utf-8")
    assert check(config).exit_code == 0
    os.chmod(rules / "sla", 0o777)
    result = check(config)
    assert result.exit_code == 1
    assert f"{rules / 'sla'}: [rules.dir] is writable by every user" in result.output


def test_a_contacts_file_is_checked_like_an_import(tmp_path):
    contacts = tmp_path / "contacts.csv"
    config = tmp_path / "triage.toml"
    config.write_text(f'[contacts]\nfile = "{contacts}"\n', encoding="utf-8")
    result = check(config)
    assert result.exit_code == 1 and f"{contacts}: [contacts.file] does not exist" in result.output
    contacts.write_text("email,name\njane@acme.example,Jane\nnot-an-address,Bob\n")
    result = check(config)
    assert result.exit_code == 0
    assert "[contacts.file] line 3 would be rejected" in result.output
    contacts.chmod(0o666)
    assert "anyone could make themselves a VIP" in check(config).output


def test_a_database_that_cannot_be_made_fails(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = tmp_path / "triage.toml"
    config.write_text(f'[store]\ndb = "{blocker / "sub" / "t.db"}"\n', encoding="utf-8")
    result = check(config)
    assert result.exit_code == 1 and "[store.db] cannot be created" in result.output


def test_contacts_import_without_a_file_imports_the_configured_one(tmp_path):
    config = tmp_path / "triage.toml"
    config.write_text(f'[store]\ndb = "{tmp_path / "t.db"}"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["contacts", "import", "--config", str(config)])
    assert result.exit_code == 2 and "[contacts] file" in result.output
    shutil.copy(ROOT / "fixtures" / "contacts.csv", tmp_path / "contacts.csv")
    config.write_text(
        f'[store]\ndb = "{tmp_path / "t.db"}"\n[contacts]\nfile = "contacts.csv"\n',
        encoding="utf-8",
    )  # relative to the config file
    result = CliRunner().invoke(cli, ["contacts", "import", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{tmp_path / 'contacts.csv'}: ") and " added" in result.output


def test_files_named_in_the_config_are_found_beside_it_from_any_folder(tmp_path, monkeypatch):
    """The daemon runs from /; a relative password_file or ca_file is relative to the config
    file, like [store] db and [rules] dir, or check and the daemon would disagree."""
    from triage.config import load_config

    from .servers import make_cert

    secret_file(tmp_path, 0o600)
    cert, _key = make_cert(tmp_path)
    config = mailbox(tmp_path, password_file="imap-password", ca_file=cert.name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert check(config).exit_code == 0
    (mb,) = load_config(config).mailboxes
    assert mb.secret.reveal() == "secret" and mb.ca_file == str(tmp_path / cert.name)
