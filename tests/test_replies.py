"""Acknowledgement texts and the loop guard's rules that need no server."""

from __future__ import annotations

import dataclasses
import email
import shutil
import string
import time
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from triage.cli import cli
from triage.config import Config, shipped_rules
from triage.core.message import Email
from triage.core.replies import (
    AckFacts,
    AckIds,
    ack_subject,
    due_text,
    facts_for,
    render,
    reply_address,
    reply_guard,
)
from triage.core.templates import Templates

from .conftest import ROOT, human

CONFIG = Config(support_address="support@msp.example", own_domains=frozenset({"msp.example"}))
NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
IDS = AckIds("0123456789abcdef", "00112233445566778899aabb")  # the engine draws these


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Printer", "[#T-000001] Printer"),
        ("Re: RE: Fwd: [#T-000001] Printer", "[#T-000001] Printer"),
        ("Re: [#T-000001] Re: [#T-000001] Printer", "[#T-000001] Printer"),
        ("", "[#T-000001] (no subject)"),
        ("Evil\r\nBcc: victim@example.com", "[#T-000001] Evil Bcc: victim@example.com"),
        ("AW: WG: [#T-000001] Drucker", "[#T-000001] Drucker"),  # German Outlook
        ("RE : TR : Imprimante", "[#T-000001] Imprimante"),  # French, spaced colons
        ("SV: VS: Skrivaren", "[#T-000001] Skrivaren"),
        ("RIF: R: I: Stampante", "[#T-000001] Stampante"),
        ("Odp: Re[2]: Drukarka", "[#T-000001] Drukarka"),
        ("返信: 転送: VPNに接続できません", "[#T-000001] VPNに接続できません"),
        ("回复：[#T-000001] 打印机", "[#T-000001] 打印机"),
        ("Re-install the driver", "[#T-000001] Re-install the driver"),
    ],
)
def test_subject_has_one_token_no_pile_up_and_no_header_injection(subject, expected):
    assert ack_subject(subject, "T-000001", "T-") == expected


@pytest.mark.parametrize(
    "sender",
    [
        "MAILER-DAEMON@x.example",
        "postmaster@x.example",
        "abuse@x.example",
        "noreply@x.example",
        "no-reply@x.example",
        "No_Reply@x.example",
        "no.reply@x.example",
        "NOREPLY-billing@x.example",
    ],
)
def test_never_reply_list_in_any_spelling(sender):
    e = Email.from_bytes(human(From=sender, Message_ID="<n@x>"))
    assert "never-reply" in reply_guard(e, CONFIG)


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        ({"From": "me@msp.example"}, "our own addresses"),
        ({"Auto_Submitted": "auto-generated"}, "Auto-Submitted"),
        ({"Precedence": "list"}, "Precedence"),
        ({"List_Id": "<l.example>"}, "list-id"),
        ({"X_Auto_Response_Suppress": "OOF, AutoReply"}, "X-Auto-Response-Suppress"),
        ({"Return_Path": "<>"}, "empty Return-Path"),
    ],
)
def test_guard_refuses_robots_even_when_their_filter_rules_are_disabled(headers, needle):
    assert needle in reply_guard(Email.from_bytes(human(**headers)), CONFIG)


def test_guard_allows_a_person_and_auto_submitted_no():
    assert reply_guard(Email.from_bytes(human(Auto_Submitted="no")), CONFIG) is None


@pytest.mark.parametrize(
    "header",
    [
        {"From": '"eve RCPT TO:<x@y>"@evil.example'},
        {"Reply_To": '"a b"@evil.example'},
        {"Reply_To": "x@[127.0.0.1]"},
        {"Reply_To": "a" * 65 + "@evil.example"},
        {"Reply_To": "a@" + "b" * 254},
        {"From": "=?utf-8?q?jane=40acme=2Eexample?="},
    ],
)
def test_only_a_plain_address_is_answered(header):
    """What reaches RCPT TO and the To header is one addr-spec: no space, quote, bracket or
    control character, within RFC 5321's lengths; anything else is not answered at all."""
    assert reply_guard(Email.from_bytes(human(**header)), CONFIG) == "no usable reply address"


def test_reply_goes_to_reply_to_when_there_is_one():
    e = Email.from_bytes(human(Reply_To="desk@acme.example"))
    assert reply_address(e) == "desk@acme.example"
    assert reply_address(Email.from_bytes(human())) == "jane@acme.example"


def test_deadline_is_shown_in_the_requesters_time_zone():
    due = datetime(2026, 3, 10, 16, 30, tzinfo=UTC)
    assert due_text(due, "America/New_York") == "Tuesday 10 March 2026, 12:30 EDT"
    assert due_text(due, "Europe/Berlin") == "Tuesday 10 March 2026, 17:30 CET"
    assert due_text(None, "UTC") == "no committed response time"


JANE = AckFacts(
    "jane@acme.example",
    "Printer",
    "<m@x>",
    ("<m@x>",),
    "T-000009",
    "P3",
    3,
    None,
    "UTC",
    "Jane",
)


def test_held_notice_and_acknowledgement_render_from_the_shipped_templates():
    templates = Templates.load(shipped_rules() / "templates")
    facts = JANE
    ack = email.message_from_bytes(
        render(facts, templates, CONFIG, NOW, IDS).raw, policy=policy.default
    )
    text = ack.get_body(("plain",)).get_content()
    assert "ticket T-000009" in text and "This request has no committed response time." in text
    held = render(dataclasses.replace(facts, kind="held"), templates, CONFIG, NOW, IDS)
    held_text = (
        email.message_from_bytes(held.raw, policy=policy.default).get_body(("plain",)).get_content()
    )
    assert "not yet on our list of contacts" in held_text


def test_the_acknowledgement_takes_its_random_parts_from_the_caller():
    """Rendering draws no random number: the ids given make the Message-ID and the boundary,
    and the same facts, clock and ids give the same bytes."""
    with_html = tmp_templates_with_html()
    ack = render(JANE, with_html, CONFIG, NOW, IDS)
    assert ack.message_id == "<T-000009.0123456789abcdef@msp.example>"
    assert b'boundary="=_triage_00112233445566778899aabb"' in ack.raw
    assert render(JANE, with_html, CONFIG, NOW, IDS).raw == ack.raw
    other = render(JANE, with_html, CONFIG, NOW, AckIds("fedcba9876543210", "ff" * 12))
    assert other.message_id == "<T-000009.fedcba9876543210@msp.example>"


def tmp_templates_with_html() -> Templates:
    """The shipped templates plus an HTML part, so the body is multipart."""
    shipped = Templates.load(shipped_rules() / "templates")
    return dataclasses.replace(shipped, ack_html=string.Template("<p>$ticket</p>"))


@pytest.mark.parametrize("char", ["a", "é", "字"])
def test_a_huge_subject_is_cut_before_it_is_folded_into_the_acknowledgement(char):
    templates = Templates.load(shipped_rules() / "templates")
    facts = dataclasses.replace(JANE, original_subject="Re: " + char * 1_000_000)
    start = time.process_time()
    ack = render(facts, templates, CONFIG, NOW, IDS)
    assert time.process_time() - start < 0.2
    parsed = email.message_from_bytes(ack.raw)
    subject = str(make_header(decode_header(parsed["Subject"])))
    assert subject.startswith("[#T-000009] " + char) and subject.endswith("…")
    assert len(subject) <= 220 and ack.subject == subject
    text = email.message_from_bytes(ack.raw, policy=policy.default).get_body(("plain",))
    assert len(text.get_content()) < 2_000


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("Hello $name", "[$name] is not a value"),
        ("Hello ${ticket.__class__}", "a $ is not followed by a name"),
        ("Cost: $5", "a $ is not followed by a name"),
    ],
)
def test_a_template_that_does_not_render_fails_check(tmp_path, text, needle):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    (rules / "templates" / "ack.txt").write_text(text, encoding="utf-8")
    config = tmp_path / "triage.toml"
    config.write_text(f'[rules]\ndir = "{rules}"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", "--config", str(config)])
    assert result.exit_code != 0 and needle in result.output and "ack.txt" in result.output


@pytest.mark.parametrize("kind", ["ack", "held"])
def test_a_huge_display_name_is_cut_before_it_reaches_the_acknowledgement(kind):
    """Issue 12.6: a 200 kB name gave a 417 kB acknowledgement. Also for a name stored
    earlier and rendered later (`triage contacts approve` reads it from the database)."""
    templates = Templates.load(shipped_rules() / "templates")
    name = "Jane " + "Doe" * 70_000
    ack = render(
        dataclasses.replace(JANE, requester_name=name, kind=kind), templates, CONFIG, NOW, IDS
    )
    assert len(ack.raw) < 6_000
    text = email.message_from_bytes(ack.raw, policy=policy.default).get_body(("plain",))
    assert f"Hello {name[:99]}…," in text.get_content()


def test_an_acknowledgement_stays_small_whatever_the_sender_writes():
    """Every sender-controlled value at its largest: subject, display name, Message-ID, a
    long References chain, the longest address. The acknowledgement is a few kB."""
    templates = Templates.load(shipped_rules() / "templates")
    mid = "<" + "m" * 990 + "@x>"
    refs = " ".join(f"<{n}{'r' * 990}@x>" for n in range(200))
    raw = human(
        From="=?utf-8?q?" + "J=C3=A9" * 20_000 + "?= <" + "a" * 64 + "@" + "b" * 250 + ">",
        Subject="x" * 100_000,
        Message_ID=mid,
        References=refs,
    )
    e = Email.from_bytes(raw)
    d = SimpleNamespace(  # the decision's fields the acknowledgement reads
        ticket="T-000009",
        priority="P3",
        level=3,
        due=None,
        timezone="UTC",
        requester_name="",
        status="open",
        stranger=True,
    )
    ack = render(facts_for(e, d, CONFIG), templates, CONFIG, NOW, IDS)
    assert ack.to == "a" * 64 + "@" + "b" * 250
    assert len(ack.raw) < 24_000, len(ack.raw)


def _fields(raw: bytes) -> dict[str, str]:
    """Header name (lower case) -> its value unfolded, from the raw bytes, decoded as UTF-8."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    out: dict[str, str] = {}
    for line in head.replace("\r\n ", " ").replace("\r\n\t", " ").split("\r\n"):
        name, _, value = line.partition(":")
        out[name.lower()] = value.strip()
    return out


def test_addresses_and_message_ids_are_never_encoded_words():
    """RFC 2047 §5: an encoded word never stands in an addr-spec or a msg-id. A customer's
    mail program does not decode one there: threading broke and the To was unreadable."""
    templates = Templates.load(shipped_rules() / "templates")
    facts = dataclasses.replace(
        JANE,
        to="jürgen@müller.example",
        in_reply_to="<abc.é@müller.example>",
        references=("<r0@x.example>", "<abc.é@müller.example>"),
    )
    raw = render(facts, templates, CONFIG, NOW, IDS).raw
    fields = _fields(raw)
    assert fields["to"] == "jürgen@müller.example"
    assert fields["in-reply-to"] == "<abc.é@müller.example>"
    assert fields["references"] == "<r0@x.example> <abc.é@müller.example>"
    assert fields["from"] == "support@msp.example"
    parsed = email.message_from_bytes(raw, policy=policy.SMTPUTF8)
    assert parsed["In-Reply-To"] == "<abc.é@müller.example>"


def test_a_long_references_chain_is_folded_between_ids_and_a_monster_id_is_left_out():
    templates = Templates.load(shipped_rules() / "templates")
    ids = tuple(f"<{n}.{'x' * 150}@mail.example>" for n in range(11))
    monster = "<" + "y" * 2000 + "@mail.example>"
    facts = dataclasses.replace(JANE, in_reply_to=monster, references=(*ids, monster))
    raw = render(facts, templates, CONFIG, NOW, IDS).raw
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    assert b"=?" not in head and b"yyyy" not in head
    fields = _fields(raw)
    assert fields["references"].split() == list(ids) and "in-reply-to" not in fields
