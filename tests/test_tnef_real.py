"""winmail.dat unpacked into its files: real TNEF written by others.

The files are third-party data, so they are not in this repository: tests/data/tnef/MANIFEST.csv
names each one's repository, commit, path, licence and git blob id, and the files sit in the
`tnef/` folder of the labelled set beside the checkout (tests/outside.py says where it is
looked for). Without them these tests skip; tests/test_tnef.py proves the same behaviour on
TNEF written here from the format's specification. The expected hashes are those of the files
MimeKit's test suite extracts from the same TNEF, so the oracle is not the library under test.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from triage.cli import cli
from triage.core.message import Email

from .outside import WHERE, git_blob, labelled
from .tnefdata import outlook

MANIFEST = Path(__file__).resolve().parent / "data" / "tnef" / "MANIFEST.csv"
with MANIFEST.open(newline="", encoding="utf-8") as _fh:
    ROWS = list(csv.DictReader(_fh))
FOLDER = labelled("tnef")
DATA = FOLDER / "tnef" if FOLDER is not None else Path("tnef-set-absent")
needs_files = pytest.mark.skipif(
    FOLDER is None,
    reason=f"the real winmail.dat files are not on this machine (a tnef/ folder in {WHERE}); "
    "tests/data/tnef/MANIFEST.csv says where each comes from",
)
AUTHORS = "36c47da7d11846caf0474a4b3df83bb4eba9ea01d2bca500c288fa108e123d28"
README = "d0f163180d6ad5d8d3b4e7c6bc0cc948d05888bff0f69dba375b946ea4c6b0fa"


def files(email: Email) -> list[tuple[str, str]]:
    return [(a.filename, a.sha256) for a in email.attachments]


def test_the_manifest_names_the_source_of_every_file_and_none_is_in_this_repository():
    assert len(ROWS) == 11
    for row in ROWS:
        assert row["source_repo"] and len(row["source_commit"]) == 40 and row["source_path"]
        assert row["licence"] and row["why"] and len(row["git_blob"]) == 40
        assert not (MANIFEST.parent / row["file"]).exists(), row["file"]


@needs_files
def test_every_file_is_the_blob_at_its_commit():
    """Never edited: each file's git blob id is the one the manifest recorded."""
    for row in ROWS:
        assert git_blob((DATA / row["file"]).read_bytes()) == row["git_blob"], row["file"]


@needs_files
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("two-files.tnef", [("AUTHORS", AUTHORS), ("README", README)]),
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


@needs_files
def test_empty_files_keep_their_names():
    email = Email.from_bytes(outlook((DATA / "data-before-name.tnef").read_bytes()))
    assert [(a.filename, a.size) for a in email.attachments] == [
        ("AUTOEXEC.BAT", 0),
        ("CONFIG.SYS", 0),
        ("boot.ini", 289),
    ]


@needs_files
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


@needs_files
def test_files_read_through_the_inexact_path_keep_the_original_beside_them():
    """tnefparse strips trailing zero bytes from files it reads from a MAPI property."""
    email = Email.from_bytes(outlook((DATA / "winmail.tnef").read_bytes()))
    assert [a.filename for a in email.attachments] == [
        "Untitled Attachment",
        "Untitled Attachment",
        "winmail.dat",
    ]


@needs_files
@pytest.mark.parametrize("name", ["garbage-at-end.tnef", "body.tnef"])
def test_a_winmail_dat_without_files_stays_as_it_was(name):
    data = (DATA / name).read_bytes()
    email = Email.from_bytes(outlook(data))
    assert [(a.filename, a.sha256) for a in email.attachments] == [
        ("winmail.dat", hashlib.sha256(data).hexdigest())
    ]


@needs_files
def test_a_real_winmail_dat_cut_short_stays_as_it_was():
    data = (DATA / "two-files.tnef").read_bytes()[:1500]
    email = Email.from_bytes(outlook(data))
    assert [(a.filename, a.sha256) for a in email.attachments] == [
        ("winmail.dat", hashlib.sha256(data).hexdigest())
    ]


@needs_files
def test_a_real_office365_message_whose_winmail_dat_holds_only_the_body():
    email = Email.from_bytes((DATA / "ukr.eml").read_bytes())
    assert email.body.startswith("шостий")  # the KOI8-R text part, not the TNEF's HTML
    assert [a.filename for a in email.attachments] == ["winmail.dat"]


@needs_files
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


@needs_files
def test_replay_stores_the_unpacked_files_and_not_the_container(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "m.eml").write_bytes(outlook((DATA / "two-files.tnef").read_bytes()))
    db = tmp_path / "t.db"
    out = CliRunner().invoke(cli, ["replay", "--db", str(db), "--json", str(folder)])
    assert out.exit_code == 0, out.output
    rows = sqlite3.connect(db).execute("SELECT filename, sha256 FROM attachments").fetchall()
    assert sorted(rows) == sorted([("AUTHORS", AUTHORS), ("README", README)])
    stored = tmp_path / "t.db.files" / AUTHORS[:2] / AUTHORS
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == AUTHORS
