"""`[[sink]]` tables: what each kind reads, and errors that name the file, the key and the fix."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from triage.config.endpoints import Secret
from triage.sinks.config import (
    ChatSettings,
    ConnectWiseSettings,
    EmailSettings,
    SinkConfigError,
    WebhookSettings,
    parse_sinks,
)

PATH = Path("/etc/triage/triage.toml")

EXAMPLE = """
[[sink]]
name = "ops-webhook"
kind = "webhook"
url = "https://hooks.example.com/triage"
secret_file = "webhook.secret"
events = ["ticket.created", "ticket.appended", "sla.breached"]

[[sink]]
name = "psa"
kind = "connectwise"
site = "api-eu.myconnectwise.net"
company_id = "examplecorp"
public_key_credential = "cw-public"
private_key_credential = "cw-private"
client_id = "6c7a0d4e-1f2b-4c3d-9e8f-a1b2c3d4e5f6"
board = 12
status = 55
priority_map = { P1 = 8, P2 = 7, P3 = 6, P4 = 5 }
company_map = { "Acme Corp" = "AcmeCorp" }
default_company = "Catchall"
events = ["ticket.created", "ticket.appended"]

[[sink]]
name = "oncall-slack"
kind = "slack"
url_file = "/etc/triage/slack.url"
events = ["ticket.created", "sla.warning", "sla.breached", "mailbox.failing", "mailbox.recovered"]
priorities = ["P1"]
vip = "also"
zone = "Europe/Berlin"

[[sink]]
name = "oncall-teams"
kind = "teams"
url_env = "TEAMS_URL"
events = ["sla.breached"]

[[sink]]
name = "oncall-mail"
kind = "email"
to = ["oncall@example.com"]
events = ["mailbox.failing"]
"""


def parse(text: str):
    return parse_sinks(PATH, tomllib.loads(text).get("sink"))


def test_the_documented_example_reads_into_values():
    hook, psa, slack, teams, mail = parse(EXAMPLE)
    assert hook.settings == WebhookSettings(
        "https://hooks.example.com/triage", Secret("file", "/etc/triage/webhook.secret")
    )
    assert hook.timeout == 15.0 and hook.max_attempts == 10 and hook.rate_limit == 10.0
    assert isinstance(psa.settings, ConnectWiseSettings)
    assert psa.settings.api == "https://api-eu.myconnectwise.net/v4_6_release/apis/3.0"
    assert psa.settings.public_key == Secret("credential", "cw-public")
    assert dict(psa.settings.priorities) == {"P1": 8, "P2": 7, "P3": 6, "P4": 5}
    assert dict(psa.settings.companies) == {"acme corp": "AcmeCorp"}
    assert (psa.settings.board, psa.settings.status) == (12, 55)
    assert slack.settings == ChatSettings(Secret("file", "/etc/triage/slack.url"))
    assert slack.subscription.priorities == {"P1"} and slack.subscription.vip == "also"
    assert slack.zone == "Europe/Berlin" and slack.rate_limit == 1.0
    assert teams.settings == ChatSettings(Secret("env", "TEAMS_URL")) and teams.rate_limit == 4.0
    assert mail.settings == EmailSettings(("oncall@example.com",))


def test_no_sinks_is_no_sinks():
    assert parse_sinks(PATH, None) == ()


BASE = 'name = "s"\nkind = "webhook"\nurl = "https://h.example/x"\nsecret_env = "S"\nevents = ["ticket.created"]\n'


@pytest.mark.parametrize(
    ("table", "key", "fix"),
    [
        ('name = "s"\nkind = "pager"\nevents = []', "sink[0].kind", "use one of"),
        (
            BASE + 'secret = "whsec_abc"',
            "sink[0].secret",
            "secret_file, secret_env or secret_credential",
        ),
        (BASE.replace('secret_env = "S"\n', ""), "sink[0]", "secret_file ="),
        (BASE + 'secret_file = "f"', "sink[0].secret_env", "keep exactly one"),
        (BASE.replace("https://h", "http://h"), "sink[0].url", "allow_insecure = true"),
        (BASE.replace("https://h.example/x", "ftp://h/x"), "sink[0].url", 'url = "https://..."'),
        (BASE.replace("https://h.example", "https://u:pw@h.example"), "sink[0].url", "remove it"),
        (BASE.replace('["ticket.created"]', '["ticket.closed"]'), "sink[0].events", "use some of"),
        (
            BASE.replace('events = ["ticket.created"]', "events = []"),
            "sink[0].events",
            "events = [",
        ),
        (BASE + 'vip = "yes"', "sink[0].vip", 'vip = "only"'),
        (BASE + "priorities = [1]", "sink[0].priorities", "priorities = ["),
        (BASE + "timeout = 0", "sink[0].timeout", "timeout = 15"),
        (BASE + "rate_limit = -1", "sink[0].rate_limit", "rate_limit = 10"),
        (BASE + "max_attempts = 0", "sink[0].max_attempts", "max_attempts = 10"),
        (BASE + 'zone = "Mars/Olympus"', "sink[0].zone", "IANA"),
        (BASE + "board = 3", "sink[0].board", "use one of ['allow_insecure'"),
        (BASE.replace('name = "s"', 'name = "a b"'), "sink[0].name", 'name = "oncall-slack"'),
        (
            'name = "c"\nkind = "slack"\nurl = "https://hooks.slack.com/services/T/B/X"\nevents = ["sla.breached"]',
            "sink[0].url",
            "url_file",
        ),
        ('name = "c"\nkind = "teams"\nevents = ["sla.breached"]', "sink[0]", "url_file ="),
        (
            'name = "m"\nkind = "email"\nto = ["not an address"]\nevents = ["sla.breached"]',
            "sink[0].to",
            "to = [",
        ),
    ],
)
def test_errors_name_file_key_and_fix(table, key, fix):
    with pytest.raises(SinkConfigError) as caught:
        parse("[[sink]]\n" + table)
    message = str(caught.value)
    assert message.startswith(f"{PATH}: [{key}] ")
    assert fix in message.split("\n  fix: ", 1)[1]


CW = """[[sink]]
name = "psa"
kind = "connectwise"
site = "cw.example.com"
company_id = "examplecorp"
public_key = "pub"
private_key_file = "cw.key"
client_id = "cid"
board = 1
default_company = "Catchall"
events = ["ticket.created"]
"""


@pytest.mark.parametrize(
    ("change", "key", "fix"),
    [
        (
            ('private_key_file = "cw.key"', 'private_key = "abc"'),
            "sink[0].private_key",
            "private_key_file",
        ),
        (("board = 1", 'board = "one"'), "sink[0].board", "board = 1"),
        (("board = 1\n", ""), "sink[0].board", "board = <id>"),
        (('default_company = "Catchall"\n', ""), "sink[0].default_company", "default_company ="),
        (('client_id = "cid"\n', ""), "sink[0].client_id", "client_id ="),
        (
            ('company_id = "examplecorp"', 'company_id = "a b"'),
            "sink[0].company_id",
            "as it is shown",
        ),
        (
            ("board = 1", 'board = 1\npriority_map = { P1 = "high" }'),
            "sink[0].priority_map.P1",
            "P1 = 8",
        ),
        (("board = 1", 'board = 1\ncompany_map = ["x"]'), "sink[0].company_map", "company_map ="),
        (("board = 1", 'board = 1\napi_version = "latest"'), "sink[0].api_version", "2022.1"),
        (("board = 1", 'board = 1\nnote_type = "public"'), "sink[0].note_type", "discussion"),
        (
            ('public_key = "pub"', 'public_key = "pub"\npublic_key_env = "P"'),
            "sink[0].public_key",
            "exactly one",
        ),
        (
            ('site = "cw.example.com"', 'site = "http://cw.example.com"'),
            "sink[0].site",
            "allow_insecure",
        ),
    ],
)
def test_connectwise_errors(change, key, fix):
    with pytest.raises(SinkConfigError) as caught:
        parse(CW.replace(*change))
    assert f"[{key}]" in str(caught.value) and fix in str(caught.value)


def test_connectwise_with_a_site_url_and_codebase():
    [psa] = parse(
        CW.replace(
            'site = "cw.example.com"', 'site = "https://cw.example.com/"\ncodebase = "v2025_1"'
        )
    )
    assert psa.settings.api == "https://cw.example.com/v2025_1/apis/3.0"
    assert psa.settings.public_key == "pub"
    assert psa.settings.private_key == Secret("file", "/etc/triage/cw.key")
    assert psa.settings.note_type == "discussion" and psa.settings.api_version == "2022.1"


def test_two_sinks_with_one_name_are_refused():
    with pytest.raises(SinkConfigError, match=r"\[sink\[1\]\.name\] 's' is used twice"):
        parse("[[sink]]\n" + BASE + "\n[[sink]]\n" + BASE)


def test_a_secret_file_is_found_beside_the_config_file():
    [hook] = parse("[[sink]]\n" + BASE.replace('secret_env = "S"', 'secret_file = "keys/hook"'))
    assert hook.settings.secret == Secret("file", "/etc/triage/keys/hook")
