"""winmail.dat unpacked into its files: real TNEF written by others, and hostile TNEF.

The files in tests/data/tnef/ are used as found (tests/data/tnef/MANIFEST.csv gives
source, commit and licence). The expected hashes are those of the files MimeKit's test
suite extracts from the same TNEF, so the oracle is not the library under test.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
from pathlib import Path

import pytest
import tnefparse.mapi
import tnefparse.tnef

from triage.core import tnef
from triage.core.message import Email

DATA = Path(__file__).resolve().parent / "data" / "tnef"
AUTHORS = "36c47da7d11846caf0474a4b3df83bb4eba9ea01d2bca500c288fa108e123d28"


def outlook(tnef_bytes: bytes, text: str = "Please see the attached files.\n") -> bytes:
    """A message as Outlook sends rich text: a text part and the TNEF as winmail.dat."""
    encoded = base64.encodebytes(tnef_bytes).decode("ascii").replace("\n", "\r\n")
    return (
        "From: Jane Doe <jane@acme.example>\r\nTo: support@msp.example\r\n"
        "Subject: Printer logs\r\nMessage-ID: <tnef@acme.example>\r\n"
        "Date: Tue, 10 Mar 2026 09:12:00 +0000\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{text}\r\n--B\r\n"
        'Content-Type: application/ms-tnef; name="winmail.dat"\r\n'
        'Content-Disposition: attachment; filename="winmail.dat"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
        f"{encoded}\r\n--B--\r\n"
    ).encode("ascii")


def files(email: Email) -> list[tuple[str, str]]:
    return [(a.filename, a.sha256) for a in email.attachments]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "two-files.tnef",
            [
                ("AUTHORS", AUTHORS),
                ("README", "d0f163180d6ad5d8d3b4e7c6bc0cc948d05888bff0f69dba375b946ea4c6b0fa"),
            ],
        ),
        ("one-file.tnef", [("AUTHORS", AUTHORS)]),
        (
            "panic.tnef",
            [
                (
                    "image001.jpg",
                    "ee9bec688ebc6b535fa1c06b3c7f388510f501509a2d6ae17e964a3eda92f8db",
                ),
                (
                    "image002.jpg",
                    "a497dd22b4a1f2de15da0929f17429edb502f94d767a0fa2ce67da35162cc62f",
                ),
                (
                    "image003.png",
                    "7c65885b27f3cd66501fdb7a4711c22ba8b6f64e51ea6c2a3ec9db6fa968a7b8",
                ),
            ],
        ),
        (
            "multi-value-attribute.tnef",
            [
                (
                    "208225__5_seconds__Voice_Mail.mp3",
                    "cf2e3cd4175a3acd5cd193623cd8f79fda1c22f4823560213e561851c3fdd4e8",
                )
            ],
        ),
        (
            "unicode-mapi-attr.tnef",
            [("example.dat", "b188960490adc65828dc99f6183137bd9951725ed739982920c9814bc842ccb5")],
        ),
    ],
)
def test_real_winmail_dat_becomes_its_files(name, expected):
    email = Email.from_bytes(outlook((DATA / name).read_bytes()))
    assert files(email) == expected  # and no winmail.dat left
    assert email.body.startswith("Please see the attached files.")


def test_empty_files_keep_their_names():
    email = Email.from_bytes(outlook((DATA / "data-before-name.tnef").read_bytes()))
    assert [(a.filename, a.size) for a in email.attachments] == [
        ("AUTOEXEC.BAT", 0),
        ("CONFIG.SYS", 0),
        ("boot.ini", 289),
    ]


def test_a_whole_outlook_message_gives_the_picture_once():
    """rich-text.eml: an Outlook message whose only attachment is winmail.dat."""
    email = Email.from_bytes((DATA / "rich-text.eml").read_bytes())
    assert [(a.filename, a.content_type, a.sha256) for a in email.attachments] == [
        (
            "kitten-playing-with-a-christmas-tree.jpg",
            "image/jpeg",
            "f79d79bf20d19d17f4bbc92bc59485be362df93deaa92b71cc0d490d3b7ac935",
        )
    ]


def test_files_read_through_the_inexact_path_keep_the_original_beside_them():
    """tnefparse strips trailing zero bytes from files it reads from a MAPI property."""
    email = Email.from_bytes(outlook((DATA / "winmail.tnef").read_bytes()))
    assert [a.filename for a in email.attachments] == [
        "Untitled Attachment",
        "Untitled Attachment",
        "winmail.dat",
    ]


@pytest.mark.parametrize("name", ["garbage-at-end.tnef", "body.tnef"])
def test_a_winmail_dat_without_files_stays_as_it_was(name):
    data = (DATA / name).read_bytes()
    email = Email.from_bytes(outlook(data))
    assert [(a.filename, a.sha256) for a in email.attachments] == [
        ("winmail.dat", hashlib.sha256(data).hexdigest())
    ]


def test_a_real_office365_message_whose_winmail_dat_holds_only_the_body():
    email = Email.from_bytes((DATA / "ukr.eml").read_bytes())
    assert email.body.startswith("шостий")  # the KOI8-R text part, not the TNEF's HTML
    assert [a.filename for a in email.attachments] == ["winmail.dat"]


def test_the_body_inside_winmail_dat_is_read_when_the_message_has_none():
    """Exchange between its own servers may send the whole message as TNEF."""
    encoded = base64.encodebytes((DATA / "body.tnef").read_bytes()).decode("ascii")
    raw = (
        "From: jane@acme.example\r\nTo: support@msp.example\r\nSubject: Rights\r\n"
        "Message-ID: <tnef-body@acme.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: application/ms-tnef; name="winmail.dat"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n" + encoded
    ).encode("ascii")
    email = Email.from_bytes(raw)
    assert (email.body_kind, email.body[:18]) == ("html", "THE BILL OF RIGHTS")


def _obj(level: int, name: int, kind: int, data: bytes) -> bytes:
    return (
        struct.pack("<BHHI", level, name, kind, len(data))
        + data
        + struct.pack("<H", sum(data) & 0xFFFF)
    )


_HEAD = struct.pack("<IH", 0x223E9F78, 1)
HOSTILE = {
    # 25 bytes claiming four billion properties: tnefparse alone loops for hours.
    "property count": _HEAD + _obj(1, 0x9003, 6, struct.pack("<I", 0xFFFFFFFF) + b"\2\0\1\0"),
    # One multi-valued property claiming 268 million values: tnefparse alone fills memory.
    "value count": _HEAD + _obj(1, 0x9003, 6, struct.pack("<IHHI", 1, 0x1002, 0x0001, 0x0FFFFFFF)),
    # 200,000 tiny objects: tnefparse copies the rest of the file for each (10 s alone).
    "many objects": _HEAD + _obj(1, 0x1234, 6, b"x") * 200_000,
    # A recipient table of four billion rows.
    "recipient rows": _HEAD + _obj(1, 0x9004, 6, struct.pack("<I", 0xFFFFFFFF) + bytes(4000)),
    "truncated": (DATA / "two-files.tnef").read_bytes()[:1500],
    "signature only": _HEAD,
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_or_broken_tnef_is_bounded_and_stays_the_attachment_it_was(case):
    data = HOSTILE[case]
    started = time.perf_counter()
    email = Email.from_bytes(outlook(data))
    assert time.perf_counter() - started < 1.5
    assert [(a.filename, a.sha256) for a in email.attachments] == [
        ("winmail.dat", hashlib.sha256(data).hexdigest())
    ]


def test_the_guards_are_in_tnefparse():
    """If a tnefparse release renames what triage.tnef wraps, the hostile cases above would
    run unguarded: this fails first, naming the version to check."""
    assert tnefparse.tnef.TNEFObject is tnef._CountedObject
    assert tnefparse.tnef.decode_mapi is tnef._counted_decode_mapi
    assert tnefparse.mapi.parse_property is tnef._counted_parse_property


def test_a_dat_file_without_the_signature_is_left_alone():
    email = Email.from_bytes(outlook(b"not tnef at all"))
    assert [a.filename for a in email.attachments] == ["winmail.dat"]


def test_replay_stores_the_unpacked_files_and_not_the_container(tmp_path):
    import sqlite3

    from click.testing import CliRunner

    from triage.cli import cli

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "m.eml").write_bytes(outlook((DATA / "two-files.tnef").read_bytes()))
    db = tmp_path / "t.db"
    out = CliRunner().invoke(cli, ["replay", "--db", str(db), "--json", str(folder)])
    assert out.exit_code == 0, out.output
    rows = sqlite3.connect(db).execute("SELECT filename, sha256 FROM attachments").fetchall()
    assert sorted(rows) == sorted(
        [
            ("AUTHORS", AUTHORS),
            ("README", "d0f163180d6ad5d8d3b4e7c6bc0cc948d05888bff0f69dba375b946ea4c6b0fa"),
        ]
    )
    stored = tmp_path / "t.db.files" / AUTHORS[:2] / AUTHORS
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == AUTHORS
