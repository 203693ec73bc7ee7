"""Email.from_bytes: the fields the pipeline reads, and refusal of what it must not read."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

import pytest

from triage.core.message import Email, Limits, MessageError

from .conftest import CORPUS, build, human, needs_corpus


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


@pytest.mark.parametrize(
    ("charset", "encoded"),
    [
        # 8-bit bytes between the lines: each was stored as U+FFFD (three bytes), the base64
        # text around them with it: the file grew to three times the bytes that carried it
        (b"", b"JVBERi0x\xff\xfe\r\nLjQgdGlu\xe9\r\neQ==\r\n"),
        # a declared UTF-16 and one 8-bit byte: the base64 text was read as UTF-16 and stored
        (b"; charset=utf-16", b"JVBERi0x\r\nLjQgdGlu\r\neQ==\xff\r\n"),
        # padding missing: the base64 text itself was stored
        (b"", b"JVBERi0xLjQgdGlueQ\r\n"),
    ],
    ids=["8-bit bytes", "utf-16 declared", "padding missing"],
)
def test_a_base64_attachment_is_the_bytes_its_base64_decodes_to(charset, encoded):
    """Whatever else the part holds, the file is what its base64 decodes to, never larger."""
    raw = HEAD + (
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
        b"--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--B\r\nContent-Type: application/pdf" + charset + b"\r\n"
        b"Content-Disposition: attachment; filename=report.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--B--\r\n"
    )
    [attachment] = Email.from_bytes(raw).attachments
    assert (attachment.data, attachment.size) == (b"%PDF-1.4 tiny", 13)


def _uuencoded(lines: bytes) -> bytes:
    return HEAD + (
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
        b"--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--B\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename=a.bin\r\n"
        b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 a.bin\r\n"
        + lines
        + b"`\r\nend\r\n--B--\r\n"
    )


def test_a_uuencoded_attachment_is_the_bytes_its_lines_carry():
    data = bytes(range(256)) * 3
    lines = b"".join(binascii.b2a_uu(data[i : i + 45]) for i in range(0, len(data), 45))
    [attachment] = Email.from_bytes(_uuencoded(lines.replace(b"\n", b"\r\n"))).attachments
    assert attachment.data == data


@pytest.mark.parametrize(
    ("lines", "data"),
    [
        (b"M\r\n" * 2000, b""),  # each line claimed 45 bytes and carried none: 90,000 zeros
        (b"M86)C\r\n", b"abc"),  # four letters carry three bytes, whatever the line claims
    ],
    ids=["no letters", "short line"],
)
def test_a_uuencoded_line_never_decodes_to_more_than_it_carries(lines, data):
    [attachment] = Email.from_bytes(_uuencoded(lines)).attachments
    assert attachment.data == data


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
    from triage.core.message import read

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
    from triage.core.forwarding import original_author

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


# --- Charsets that are missing, wrong, or narrower than what clients write ---------------

JA = "お世話になっております。サーバーが停止しました。至急ご確認ください。"
ZH_HANS = "您好，服务器从今天早上开始无法连接，请尽快处理。谢谢！"
ZH_HANT = "您好，伺服器從今天早上開始無法連線，請儘快處理。謝謝！"
HEAD = (
    b"From: a@b.example\r\nTo: support@msp.example\r\nSubject: s\r\n"
    b"Message-ID: <cs@b.example>\r\nDate: Tue, 10 Mar 2026 09:12:00 +0000\r\n"
)


@pytest.mark.parametrize(
    ("mime", "data", "text"),
    [
        (b"", JA.encode("iso2022_jp"), JA),  # no MIME headers at all
        (b"Content-Type: text/plain\r\n", JA.encode("iso2022_jp"), JA),
        # Declared, 7bit: the most common Japanese mail, which mail-parser returns as escapes.
        (b"Content-Type: text/plain; charset=ISO-2022-JP\r\n", JA.encode("iso2022_jp"), JA),
        (
            b"Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n",
            JA.encode("cp932"),
            JA,
        ),
        (b"Content-Type: text/plain; charset=us-ascii\r\n", JA.encode("cp932"), JA),
        (b"", JA.encode("euc_jp"), JA),
        (b"", ZH_HANS.encode("gbk"), ZH_HANS),
        (b"", ZH_HANT.encode("big5"), ZH_HANT),
        (b"", JA.encode("utf-8"), JA),  # UTF-8 is tried first
        (
            b"Content-Type: text/plain; charset=us-ascii\r\n",
            "Grüße aus München".encode("cp1252"),
            "Grüße aus München",
        ),
        # Declared with a name narrower than what the client wrote: Outlook's extensions.
        (
            b"Content-Type: text/plain; charset=shift_jis\r\n",
            "①②③ ㈱山本".encode("cp932"),
            "①②③ ㈱山本",
        ),
        (
            b"Content-Type: text/plain; charset=iso-2022-jp\r\n",
            b'\x1b$B-!-"\x1b(B \x1b$B-j;3K\\\x1b(B',
            "①② ㈱山本",
        ),
        (b"Content-Type: text/plain; charset=gb2312\r\n", "喆服务器".encode("gbk"), "喆服务器"),
    ],
)
def test_undeclared_and_misdeclared_charsets_are_read_as_written(mime, data, text):
    raw = HEAD + (b"MIME-Version: 1.0\r\n" + mime if mime else b"") + b"\r\n" + data + b"\r\n"
    assert Email.from_bytes(raw).body.strip() == text


# A raw 8-bit byte in a MIME header (a mail client's unencoded comment or name) made the
# stdlib hand back an `email.header.Header` where text was expected, and the charset guess
# raised writing its answer: the message ended as `pipeline_error`, never a ticket.
@pytest.mark.parametrize(
    ("mime", "data", "text"),
    [
        (  # a name in Shift_JIS, text in Shift_JIS, no charset declared
            b'Content-Type: text/plain; format=flowed; x-note="\x8f\xe1\x8aQ"\r\n',
            JA.encode("cp932"),
            JA,
        ),
        (  # declared with no charset: the guess is written back
            b'Content-Type: text/plain; x-note="M\xfcller"\r\n',
            "Grüße aus München".encode("cp1252"),
            "Grüße aus München",
        ),
        (  # a name with a superset and an 8-bit parameter: every parameter was written again
            b'Content-Type: text/plain; charset=shift_jis; x-note="\x8f\xe1\x8aQ"\r\n',
            "①②③ ㈱山本".encode("cp932"),
            "①②③ ㈱山本",
        ),
        (  # an RFC 2231 parameter in a charset Python lacks: set_param could not write it again
            b"Content-Type: text/plain; charset=us-ascii; title*=x-unknown''abc\r\n",
            "Grüße aus München".encode("cp1252"),
            "Grüße aus München",
        ),
        (  # the fuzz run's shape: nothing but 8-bit bytes (read as the default text/plain)
            b"Content-Type: \x99\r\n",
            "Grüße aus München".encode("cp1252"),
            "Grüße aus München",
        ),
    ],
    ids=["shift_jis", "windows-1252", "superset", "rfc 2231 charset", "nothing but 8-bit bytes"],
)
def test_8bit_bytes_in_a_mime_header_do_not_stop_the_charset_guess(mime, data, text):
    raw = HEAD + b"MIME-Version: 1.0\r\n" + mime + b"\r\n" + data + b"\r\n"
    assert Email.from_bytes(raw).body.strip() == text


def test_8bit_bytes_in_a_part_header_do_not_stop_the_charset_guess():
    raw = HEAD + (
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
        b'--B\r\nContent-Type: text/plain; name="Bestellbest\xe4tigung.txt"\r\n'
        b"Content-Disposition: inline\r\n\r\n" + "Bitte prüfen.".encode("cp1252") + b"\r\n"
        b"--B\r\nContent-Type: text/plain; charset=us-ascii; x-note=\xe9\r\n\r\n"
        + "Danke, Jürgen".encode("cp1252")
        + b"\r\n--B--\r\n"
    )
    email = Email.from_bytes(raw)
    assert "Bitte prüfen." in email.body and "Danke, Jürgen" in email.body


def test_a_part_whose_charset_is_guessed_keeps_its_other_parameters_as_they_came():
    """The charset is put first; a name in raw UTF-8 after it is still read as written."""
    raw = HEAD + (
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
        b'--B\r\nContent-Type: text/plain; format=flowed; name="Best\xc3\xa4tigung.txt"\r\n'
        b"Content-Disposition: inline\r\n\r\n" + "Bitte prüfen.".encode("cp1252") + b"\r\n"
        b"--B--\r\n"
    )
    email = Email.from_bytes(raw)
    assert email.body.strip() == "Bitte prüfen."
    assert [a.filename for a in email.attachments] == ["Bestätigung.txt"]


@pytest.mark.parametrize(
    ("subject", "text"),
    [
        ("障害".encode("iso2022_jp") + b" report", "障害 report"),  # raw ISO-2022-JP
        ("サーバーが停止しました".encode("cp932"), "サーバーが停止しました"),
        ("サーバーが停止しました".encode("euc_jp"), "サーバーが停止しました"),
        ("服务器停止了".encode("gbk"), "服务器停止了"),
        ("Müller GmbH".encode("cp1252"), "Müller GmbH"),
        (
            b"=?shift_jis?B?" + base64.b64encode("①サーバー".encode("cp932")) + b"?=",
            "①サーバー",
        ),
    ],
)
def test_raw_8bit_and_iso2022_headers_are_read_as_written(subject, text):
    raw = HEAD.replace(b"Subject: s", b"Subject: " + subject) + b"\r\nbody\r\n"
    assert Email.from_bytes(raw).subject == text


@needs_corpus
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bounce/sisimai-26.eml", "このメールは「m-FILTER」が自動的に生成"),  # ISO-2022-JP, 7bit
        ("bounce/sisimai-29.eml", "エラー(テストメッセージとしての)"),
    ],
)
def test_real_iso2022jp_bodies_are_read_not_shown_as_escapes(name, expected):
    email = Email.from_bytes((CORPUS / name).read_bytes())
    assert expected in email.body and "\x1b" not in email.body


@needs_corpus
def test_real_koi8_subject_without_a_content_type_is_read():
    """bestpractical/rt's russian-subject-no-content-type: KOI8-R, no MIME headers."""
    assert Email.from_bytes((CORPUS / "human/rt-10.eml").read_bytes()).subject == "тест тест"


def test_charset_guessing_is_bounded_on_hostile_bodies():
    import random
    import time

    rng = random.Random(5)
    parts = b"".join(
        b"--B\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + bytes(rng.randrange(128, 256) for _ in range(2000))
        + b"\r\n"
        for _ in range(200)
    )
    big = bytes(rng.randrange(128, 256) for _ in range(2_000_000))
    for body in (parts + b"--B--\r\n", big):
        ctype = b"Content-Type: multipart/mixed; boundary=B\r\n" if body is not big else b""
        raw = HEAD + b"MIME-Version: 1.0\r\n" + ctype + b"\r\n" + body
        started = time.perf_counter()
        Email.from_bytes(raw)
        assert time.perf_counter() - started < 3


def test_mail_parser_walks_every_fixture_without_falling_back():
    """The bodies come from mail-parser's walk, whose private state `bodies._Lean` resets: a
    mail-parser release that renamed it would send every message to the stdlib reading."""
    from .conftest import FIXTURES

    fell_back = {
        path.name: d
        for path in sorted(FIXTURES.glob("*.eml"))
        for d in Email.from_bytes(path.read_bytes()).defects
        if d.startswith("mail-parser failed")
    }
    assert fell_back == {}


def test_a_message_mail_parser_cannot_walk_is_read_with_the_stdlib(monkeypatch):
    from triage.core import bodies

    class Broken:
        def __init__(self, _msg: object) -> None:
            raise AttributeError("a renamed private attribute")

    monkeypatch.setattr(bodies, "_Lean", Broken)
    raw = build(
        {
            "From": "a@b.example",
            "Subject": "s",
            "MIME-Version": "1.0",
            "Content-Type": 'multipart/mixed; boundary="B"',
        },
        "--B\nContent-Type: text/plain\n\nsee attached\n--B\nContent-Type: application/pdf\n"
        'Content-Disposition: attachment; filename="report.pdf"\nContent-Transfer-Encoding: base64\n\n'
        + base64.b64encode(b"%PDF-1.4 tiny").decode()
        + "\n--B--\n",
    )
    e = Email.from_bytes(raw)
    assert e.body.strip() == "see attached"
    assert [(a.filename, a.data) for a in e.attachments] == [("report.pdf", b"%PDF-1.4 tiny")]
    assert e.defects == ("mail-parser failed (AttributeError); read with the stdlib",)


def _all_mail() -> list:
    from .conftest import FIXTURES
    from .outside import labelled

    found = sorted(FIXTURES.glob("*.eml"))
    found += sorted(CORPUS.rglob("*.eml")) if CORPUS.is_dir() else []
    held = labelled()
    found += sorted(p for p in held.rglob("*") if p.is_file()) if held is not None else []
    return found


@pytest.mark.parametrize(
    "body",
    [
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nHall\xc3\xa5 there\r\n",
        b"Content-Type: text/html; charset=iso-8859-1\r\n\r\n<p>Hall\xe5</p>\r\n",
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode("Grüße".encode())
        + b"\r\n",
        b"Content-Type: text/plain; charset=undefined\r\n\r\nHall\xe5\r\n",  # fails, then utf-8
        b"Content-Type: text/plain\r\nContent-Disposition: inline\r\n\r\nhello\r\n",
        b"Content-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nhello\r\n",
        b'Content-Type: text/plain; name="a.txt"\r\n\r\nhello\r\n',
        b'Content-Type: text/plain; name="\xe5.txt"\r\n\r\nhello\r\n',
        b"Content-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR\r\n",
        b"Content-Type: text/plain\r\n\r\n",
    ],
)
def test_one_text_part_reads_as_mail_parsers_walk_reads_it(body):
    """`bodies._one_text` stands in for mail-parser's walk on a message of one text part:
    the same text, in the same list, or it declines (named parts, attachments, odd types)."""
    import email as email_pkg

    from triage.core import bodies

    msg = email_pkg.message_from_bytes(b"From: a@b.example\r\nSubject: s\r\n" + body)
    walked = bodies._Lean(msg)
    mine = bodies._one_text(msg)
    if mine is not None:
        assert mine == (walked.text_plain, walked.text_html, [])
    assert (mine is None) == (b"name=" in body or b"attachment" in body or b"calendar" in body)


def test_one_text_part_reads_as_mail_parsers_walk_on_all_mail_we_have():
    import email as email_pkg

    from triage.core import bodies

    taken = 0
    for path in _all_mail():
        msg = email_pkg.message_from_bytes(path.read_bytes())
        mine = bodies._one_text(msg)
        if mine is None:
            continue
        taken += 1
        walked = bodies._Lean(msg)
        assert mine == (walked.text_plain, walked.text_html, walked.attachments), path
    assert taken >= 20
