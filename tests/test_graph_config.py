"""`[[mailbox]] kind = "graph"` and `[smtp] kind = "graph"`: what `triage check` refuses, with
the file, the key and the fix, and what it reports (`--connect` against the Graph stand-in)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.graph_drain import CLIENT_ID, SECRET, UPN, standard
from tests.support.graph_standin import TENANT, GraphStandIn
from triage.cli import cli
from triage.config import ConfigError, load_config

BASE = {
    "name": "m365",
    "kind": "graph",
    "tenant_id": TENANT,
    "client_id": CLIENT_ID,
    "client_secret_env": "TRIAGE_TEST_GRAPH_SECRET",
    "user": UPN,
}


def config(tmp_path, extra: str = "", **keys: object) -> str:
    table = {**BASE, **keys}
    lines = "".join(
        f"{k} = {v if isinstance(v, int) else repr(v).replace(chr(39), chr(34))}\n"
        for k, v in table.items()
        if v is not None
    )
    path = tmp_path / "triage.toml"
    path.write_text(f'[store]\ndb = "{tmp_path / "t.db"}"\n[[mailbox]]\n{lines}{extra}')
    return str(path)


def refused(tmp_path, extra: str = "", **keys: object) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(Path(config(tmp_path, extra, **keys)))
    return caught.value


def test_a_graph_mailbox_is_read_with_its_defaults(tmp_path):
    loaded = load_config(Path(config(tmp_path)))
    assert loaded.mailboxes == ()
    (mb,) = loaded.graph_mailboxes
    assert (mb.name, mb.user, mb.folder, mb.after, mb.batch) == ("m365", UPN, "inbox", "move", 100)
    assert mb.credentials.secret.where == "env"
    assert mb.graph_url == "https://graph.microsoft.com/v1.0"


@pytest.mark.parametrize(
    ("keys", "key", "says"),
    [
        ({"client_secret": "hunter2"}, "mailbox[0].client_secret", "never written"),
        ({"client_secret_env": None}, "mailbox[0]", "no client secret source"),
        (
            {"certificate_file": "app.pem", "certificate_key_env": "K"},
            "mailbox[0].client_secret_env",
            "both given",
        ),
        ({"tenant_id": "my tenant"}, "mailbox[0].tenant_id", "not a tenant id"),
        ({"client_id": "triage"}, "mailbox[0].client_id", "not an application id"),
        ({"user": "support"}, "mailbox[0].user", "neither a mailbox address"),
        ({"after": "delete"}, "mailbox[0].after", "'delete' is not known"),
        ({"batch": 5000}, "mailbox[0].batch", "outside the range"),
        ({"graph_url": "http://graph.example/v1.0"}, "mailbox[0].graph_url", "https"),
        ({"notify_url": "https://x.example/n"}, "mailbox[0].notify_listen", "is missing"),
        # accepted once, then failing at every connection: refused when the file is read
        (
            {"notify_url": "https://x.example/n", "notify_listen": "127.0.0.1:99999"},
            "mailbox[0].notify_listen",
            "not a port",
        ),
        (
            {"notify_url": "https://x.example/n", "notify_listen": "[::1]"},
            "mailbox[0].notify_listen",
            "no port",
        ),
        ({"kind": "ews"}, "mailbox[0].kind", "'ews' is not known"),
        ({"host": "imap.example"}, "mailbox[0].host", "is not a known key"),
    ],
)
def test_a_wrong_graph_key_is_refused_naming_file_key_and_fix(tmp_path, keys, key, says):
    error = refused(tmp_path, **keys)
    assert error.key == key and says in str(error), str(error)
    assert str(tmp_path / "triage.toml") in str(error)


def test_a_graph_sender_must_name_a_graph_mailbox(tmp_path):
    error = refused(tmp_path, extra='[smtp]\nkind = "graph"\nmailbox = "support"\n')
    assert error.key == "smtp.mailbox" and "m365" in str(error)
    ok = load_config(Path(config(tmp_path, extra='[smtp]\nkind = "graph"\nmailbox = "m365"\n')))
    assert ok.smtp is None and ok.graph_sending is not None and ok.graph_sending.user == UPN


def test_names_are_unique_across_imap_and_graph(tmp_path):
    imap = (
        '[[mailbox]]\nname = "m365"\nhost = "imap.example"\nusername = "u"\npassword_env = "PW"\n'
    )
    error = refused(tmp_path, extra=imap)
    assert error.key == "mailbox[0].name" and "used twice" in str(error)


def test_check_connect_gets_a_token_and_finds_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAGE_TEST_GRAPH_SECRET", SECRET)
    with GraphStandIn.start(tmp_path / "standin") as g:
        standard(g)
        g.deliver(UPN, "inbox", b"Subject: x\r\nMessage-ID: <c@x>\r\n\r\nbody\r\n")
        path = config(
            tmp_path, authority_host=g.url, graph_url=g.url + "/v1.0", ca_file=str(g.ca_file)
        )
        done = CliRunner().invoke(cli, ["check", "--connect", "--config", path])
        assert done.exit_code == 0, done.output
        assert f"mailbox  m365: {UPN} through Microsoft Graph" in done.output
        assert "mailbox m365: ok" in done.output and "inbox: 1 message(s)" in done.output
        assert g.folder(UPN, "Triage/Processed")["exists"] is False  # nothing created
        monkeypatch.setenv("TRIAGE_TEST_GRAPH_SECRET", "wrong")
        done = CliRunner().invoke(cli, ["check", "--connect", "--config", path])
        assert done.exit_code != 0 and "AADSTS7000215" in done.output
