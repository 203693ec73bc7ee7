"""Email.from_bytes: the fields the pipeline reads, and refusal of what it must not read."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from triage.message import Email, Limits, MessageError

from .conftest import build, human


def test_fields_of_a_plain_message():
    e = Email.from_bytes(
        human(
            Cc="Bob <BOB@acme.example>",
            Reply_To="helpdesk@acme.example",
            Delivered_To="support@msp.example",
        )
    )
    assert e.key == "<abc123@mail.acme.example>" == e.message_id
    assert (e.from_addr, e.from_name) == ("jane@acme.example", "Jane Doe")
    assert e.from_display == "Jane Doe <jane@acme.example>"
    assert e.to == ("support@msp.example",)
    assert e.cc == ("bob@acme.example",)
    assert e.reply_to == ("helpdesk@acme.example",)
    assert e.delivered_to == ("support@msp.example",)
    assert e.subject == "Printer on floor 2 is jammed"
    assert e.date == datetime(2026, 3, 10, 9, 12, tzinfo=UTC)
    assert "printer is jammed" in e.body and e.body_kind == "plain"


def test_key_is_a_hash_of_the_bytes_when_message_id_is_missing():
    raw = build({"From": "a@b.example", "Subject": "x"})
    e = Email.from_bytes(raw)
    assert e.message_id is None
    assert e.key.startswith("sha256:") and e.key == Email.from_bytes(raw).key
    assert e.key != Email.from_bytes(raw + b"more").key


def test_rfc2047_subject_and_name_are_decoded():
    raw = build(
        {
            "From": "=?ISO-8859-1?Q?J=FCrgen_M=FCller?= <jm@globex.example>",
            "Subject": "=?UTF-8?B?" + base64.b64encode("Drucker kaputt 🖨️".encode()).decode() + "?=",
            "Message-ID": "<x@y>",
        }
    )
    e = Email.from_bytes(raw)
    assert e.from_name == "Jürgen Müller"
    assert e.subject == "Drucker kaputt 🖨️"


def test_html_only_body_becomes_text():
    raw = build(
        {"From": "a@b.example", "Subject": "s", "Content-Type": "text/html; charset=utf-8"},
        "<html><head><style>p{}</style></head><body><p>Server&nbsp;is <b>down</b></p><p>Second</p></body></html>",
    )
    e = Email.from_bytes(raw)
    assert e.body_kind == "html"
    assert e.body.splitlines() == ["Server is down", "Second"]


def test_attachment_metadata_and_bytes():
    payload = b"%PDF-1.4 tiny"
    raw = build(
        {
            "From": "a@b.example",
            "Subject": "s",
            "MIME-Version": "1.0",
            "Content-Type": 'multipart/mixed; boundary="B"',
        },
        "--B\nContent-Type: text/plain\n\nsee attached\n--B\nContent-Type: application/pdf\n"
        'Content-Disposition: attachment; filename="report.pdf"\nContent-Transfer-Encoding: base64\n\n'
        + base64.b64encode(payload).decode()
        + "\n--B--\n",
    )
    e = Email.from_bytes(raw)
    assert [(a.filename, a.content_type, a.size) for a in e.attachments] == [
        ("report.pdf", "application/pdf", len(payload))
    ]
    assert e.attachments[0].data == payload
    assert e.body.strip() == "see attached"


def test_report_and_part_types_are_collected():
    raw = build(
        {
            "From": "MAILER-DAEMON",
            "Subject": "s",
            "MIME-Version": "1.0",
            "Content-Type": 'multipart/report; report-type=delivery-status; boundary="B"',
        },
        "--B\nContent-Type: text/plain\n\nfailed\n--B\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.example\n\nFinal-Recipient: rfc822; x@y.example\nAction: failed\n--B--\n",
    )
    e = Email.from_bytes(raw)
    assert e.report_types == ("delivery-status",)
    assert "message/delivery-status" in e.part_types
    assert e.from_addr == "mailer-daemon"


def test_in_reply_to_and_references_are_message_ids():
    e = Email.from_bytes(human(In_Reply_To="<a@x>", References="<r1@x> <a@x>\r\n <r2@x>"))
    assert e.in_reply_to == ("<a@x>",)
    assert e.references == ("<r1@x>", "<a@x>", "<r2@x>")


def test_undeclared_8bit_header_is_read_best_effort():
    raw = b"From: a@b.example\r\nSubject: caf\xe9 \xff\r\nMessage-ID: <q@x>\r\n\r\nbody\r\n"
    e = Email.from_bytes(raw)
    assert e.subject.startswith("caf")


def test_unknown_charset_body_is_decoded_best_effort():
    raw = build(
        {
            "From": "a@b.example",
            "Subject": "s",
            "Content-Type": "text/plain; charset=x-no-such-charset",
        },
        "plain words",
    )
    assert "plain words" in Email.from_bytes(raw).body


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"   \r\n\r\n", "empty"),
        (b"this is not an email at all, just a sentence.", "not_email"),
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "bad_header"),
        (b"From: a@b.example\r\nSubject: nul\x00here\r\n\r\nbody", "bad_header"),
        (b"From: a@b.example\r\nSubject: bare\rcr\r\n\r\nbody", "bad_header"),
    ],
)
def test_unreadable_input_is_refused_with_a_reason(raw, reason):
    with pytest.raises(MessageError) as exc:
        Email.from_bytes(raw)
    assert exc.value.reason == reason


def test_size_limit():
    raw = human(body="x" * 2000)
    with pytest.raises(MessageError) as exc:
        Email.from_bytes(raw, Limits(max_bytes=1000))
    assert exc.value.reason == "too_large"


def test_deep_nesting_is_refused():
    depth = 1000
    head = "From: a@b.example\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
    parts = []
    for i in range(depth):
        parts.append(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n')
    raw = (head + "".join(parts) + "Content-Type: text/plain\r\n\r\nhi\r\n").encode()
    with pytest.raises(MessageError) as exc:
        Email.from_bytes(raw)
    assert exc.value.reason in ("too_deep", "too_many_parts")


def test_the_remembered_content_type_follows_header_changes():
    from triage.message import read

    reading = read(human(), Limits())
    msg = reading._msg
    del msg["Content-Type"]
    assert msg.get_content_type() == "text/plain"
    msg["Content-Type"] = "text/html"
    assert msg.get_content_type() == "text/html"
    msg.replace_header("Content-Type", "application/pdf")
    assert msg.get_content_type() == "application/pdf"
    del msg["Content-Type"]
    assert msg.get_content_type() == "text/plain"
    msg.set_default_type("message/rfc822")
    assert msg.get_content_type() == "message/rfc822"


def test_an_attached_message_keeps_its_own_8bit_bytes():
    inner = b"From: a@b.example\r\nSubject: inner\r\nX-Scan: caf\xe9 \x98\r\n\r\nbody\r\n"
    raw = (
        b"From: One <one@acme.example>\r\nTo: support@msp.example\r\nSubject: fwd\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: message/rfc822\r\n"
        b"Content-Disposition: attachment; filename=fwd.eml\r\n\r\n" + inner + b"\r\n--b--\r\n"
    )
    (attached,) = Email.from_bytes(raw).attachments
    assert b"X-Scan: caf\xe9 \x98" in attached.data
    assert attached.data.replace(b"\r\n", b"\n").startswith(inner.replace(b"\r\n", b"\n")[:40])


# RFC 2047 §5: an encoded word is never part of an addr-spec. Each row is an address header
# whose display name is an encoded word that decodes to another address (or to a line break
# and a new header): the address is the one in the raw header, the encoded word only a name.
SPELLED = "=?utf-8?q?jane=40acme=2Eexample?= <eve@evil.example>"
INJECTED = "=?utf-8?q?Eve=0D=0ABcc=3A_x=40y?= <eve@evil.example>"


@pytest.mark.parametrize("value", [SPELLED, INJECTED, f'"{SPELLED[:-19]}" <eve@evil.example>'])
def test_an_encoded_word_never_spells_the_from_address(value):
    e = Email.from_bytes(human(From=value))
    assert e.from_addr == "eve@evil.example"
    assert "\r" not in e.from_name and "\n" not in e.from_name


def test_the_display_name_is_still_decoded():
    assert Email.from_bytes(human(From=SPELLED)).from_name == "jane@acme.example"
    assert Email.from_bytes(human(From=INJECTED)).from_name == "Eve Bcc: x@y"


def test_an_encoded_word_alone_is_no_address():
    for value in ("=?utf-8?q?jane=40acme=2Eexample?=", '"=?utf-8?q?jane=40acme=2Eexample?="'):
        assert "@" not in Email.from_bytes(human(From=value)).from_addr


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("To", "to"),
        ("Cc", "cc"),
        ("Reply-To", "reply_to"),
        ("Delivered-To", "delivered_to"),
        ("X-Original-To", "delivered_to"),
    ],
)
def test_an_encoded_word_never_spells_a_recipient_or_reply_address(header, field):
    e = Email.from_bytes(
        human(**{header.replace("-", "_"): "=?utf-8?q?urgent=40msp.example?= <n@evil.example>"})
    )
    assert getattr(e, field) == ("n@evil.example",)
    e = Email.from_bytes(human(**{header.replace("-", "_"): INJECTED}))
    assert getattr(e, field) == ("eve@evil.example",)


def test_an_encoded_word_never_spells_the_author_of_an_attached_message():
    from triage.forwarding import original_author

    raw = build(
        {
            "From": "agent@msp.example",
            "To": "support@msp.example",
            "Subject": "FW: Printer",
            "MIME-Version": "1.0",
            "Content-Type": 'multipart/mixed; boundary="B"',
        },
        "--B\nContent-Type: text/plain\n\nsee attached\n--B\nContent-Type: message/rfc822\n\n"
        f"From: {SPELLED}\nSubject: Printer\n\nIt jams.\n--B--\n",
    )
    assert original_author(Email.from_bytes(raw)) == ("jane@acme.example", "eve@evil.example")


def test_message_ids_are_read_from_the_raw_header():
    e = Email.from_bytes(human(In_Reply_To="=?utf-8?q?=3Cabc=40x=3E?=", References="<r@x>"))
    assert e.in_reply_to == () and e.references == ("<r@x>",)
