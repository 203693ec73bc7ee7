"""winmail.dat unpacked into its files, proved on TNEF written here (tests/tnefdata.py).

The TNEF is written from Microsoft's format description, [MS-OXTNEF], with file contents of
our own, so these tests need nothing from outside the repository. Each sender's trick (a
Unicode name, data before the name, junk after the end, an attached message) is paired with
what must come out: the files, byte for byte, stored by replay; and each broken or
over-budget file with its sound twin, which must unpack, while the broken one stays the
attachment it was. Real files written by others: tests/test_tnef_real.py.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import struct
import time
from collections.abc import Callable
from datetime import datetime

import pytest
import tnefparse.mapi
import tnefparse.tnef
from click.testing import CliRunner

from triage.cli import cli
from triage.core import tnef
from triage.core.message import Email

from . import tnefdata as T
from .tnefdata import outlook

TEXT = "Please see the attached files.\n"
AUTHORS = b"Jane Doe <jane@acme.example>\nWile E. Coyote <wile.coyote@acme.example>\n"
README = b"Printer PR-4 on floor 3 jams on every second page since Monday.\r\n" * 12
LOG = bytes(range(1, 256)) * 40 + b"end of log\n"  # binary, and no trailing zero bytes
BOOT_INI = (
    b"[boot loader]\r\ntimeout=30\r\ndefault=multi(0)disk(0)rdisk(0)partition(1)\\WINDOWS\r\n"
)
PICTURE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3 + b"IEND\xaeB`\x82"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def kept(data: bytes) -> list[tuple[str, str]]:
    """What a winmail.dat that is not unpacked leaves: itself, byte for byte."""
    return [("winmail.dat", sha(data))]


def _report(properties: bytes) -> bytes:
    """One file, REPORT.LOG, whose attAttachment property list is `properties`."""
    return (
        T.rend_data()
        + T.attribute(T.ATTACHMENT, T.attAttachTitle, b"REPORT.LOG\0")
        + T.attribute(T.ATTACHMENT, T.attAttachData, LOG)
        + T.attribute(T.ATTACHMENT, T.attAttachment, properties)
    )


def claimed_properties(count: int | None) -> bytes:
    """A file whose property list claims `count` properties (None: the true count)."""
    method = T.prop(T.PtypInteger32, T.PidTagAttachMethod, T.AFBYVALUE)
    return T.winmail(_report(T.props(method, declared=count)))


def claimed_values(count: int | None) -> bytes:
    """A file with a multi-valued property claiming `count` values (None: the true 3)."""
    values = T.prop(
        T.PtypInteger32 | T.MULTIPLE, T.PidTagScheduleInfoMonthsBusy, 1, 2, 3, declared=count
    )
    return T.winmail(_report(T.props(values)))


def claimed_recipients(rows: int) -> bytes:
    """A message whose recipient table claims `rows` rows and holds one, then a file."""
    row = T.props(
        T.prop(T.PtypString, T.PidTagDisplayName, "Support"),
        T.prop(T.PtypString8, T.PidTagSmtpAddress, "support@msp.example"),
    )
    table = T.attribute(T.MESSAGE, T.attRecipTable, struct.pack("<I", rows) + row)
    return T.stream(*T.head(), table, T.file("REPORT.LOG", LOG))


ONE = T.winmail(T.file("AUTHORS", AUTHORS))
TWO = T.winmail(T.file("AUTHORS", AUTHORS), T.file("README", README))  # ONE, then README
CUT_DATA = b"\x02\x0f\x80\x06\x00" + b"\xff" * 40  # reads as 4 GB of attachment data, cut
CUT_PROPS = b"\x01\x03\x90\x06\x00" + b"\xff" * 40  # reads as message properties, cut
BASE64_JUNK = b"KKACiiigAooooAKK\nKKKACiiigAooooAKKKKACiiigAooooAKKKKAC\n" * 300  # seen in the wild
BODY_HTML = (
    "<html><body><p>Gr\u00fc\u00dfe aus Z\u00fcrich: the printer is jammed.</p></body></html>"
)

# Each scenario: messages as (winmail.dat, what replay must store for it).
SCENARIOS: dict[str, list[tuple[bytes, list[tuple[str, str]]]]] = {
    "one file": [(T.winmail(T.file("AUTHORS", AUTHORS)), [("AUTHORS", sha(AUTHORS))])],
    "two files, with their dates as Outlook writes them": [
        (
            T.winmail(
                T.file("AUTHORS", AUTHORS, modified=datetime(2026, 3, 9, 17, 45, 12)),
                T.file("README", README, modified=datetime(2026, 3, 10, 8, 1, 0)),
            ),
            [("AUTHORS", sha(AUTHORS)), ("README", sha(README))],
        )
    ],
    "a long name in a Unicode property beats the 8.3 title": [
        (
            T.winmail(
                T.file("PRFBER~1.LOG", LOG, long_name="Pr\u00fcfbericht M\u00e4rz \u898b\u7a4d.log")
            ),
            [("Pr\u00fcfbericht M\u00e4rz \u898b\u7a4d.log", sha(LOG))],
        )
    ],
    "a long name in the stream's code page (Windows-1251)": [
        (
            T.winmail(
                T.file(
                    "SCHET.LOG", LOG, long_name8="\u0421\u0447\u0451\u0442.log".encode("cp1251")
                ),
                codepage=1251,
            ),
            [("\u0421\u0447\u0451\u0442.log", sha(LOG))],
        )
    ],
    "a title alone, in the stream's code page (Windows-1252)": [
        (
            T.winmail(T.file("Bericht M\u00e4rz.log".encode("cp1252"), LOG)),
            [("Bericht M\u00e4rz.log", sha(LOG))],
        )
    ],
    "data before name, and empty files that keep their names": [
        (
            T.winmail(
                T.file("AUTOEXEC.BAT", b"", data_first=True),
                T.file("CONFIG.SYS", b"", data_first=True),
                T.file("boot.ini", BOOT_INI, data_first=True),
            ),
            [("AUTOEXEC.BAT", sha(b"")), ("CONFIG.SYS", sha(b"")), ("boot.ini", sha(BOOT_INI))],
        )
    ],
    "a picture Outlook lists twice is stored once": [
        (
            T.winmail(T.file("image001.png", PICTURE), T.file("image001.png", PICTURE)),
            [("image001.png", sha(PICTURE))],
        )
    ],
    "two files of one name are both kept": [
        (
            T.winmail(T.file("README", README), T.file("README", AUTHORS)),
            [("README", sha(README)), ("README", sha(AUTHORS))],
        )
    ],
    "a name that tries to leave the folder": [
        (
            T.winmail(T.file("EVIL.EXE", LOG, long_name="..\\../\x1b[31mevil.log")),
            [(".._.._[31mevil.log", sha(LOG))],
        )
    ],
    "the files of an attached message": [
        (
            T.winmail(T.embedded_message("Fwd: logs", T.winmail(T.file("README", README)))),
            [("README", sha(README))],
        )
    ],
    "a file only in PidTagAttachDataBinary keeps the original beside it": [
        (
            T.winmail(T.file_in_property("printer.log", LOG)),
            [
                ("printer.log", sha(LOG)),
                ("winmail.dat", sha(T.winmail(T.file_in_property("printer.log", LOG)))),
            ],
        )
    ],
    "an HTML body and no file stays; with a file, the file replaces it": [
        (T.winmail(html=BODY_HTML), kept(T.winmail(html=BODY_HTML))),
        (T.winmail(T.file("AUTHORS", AUTHORS), html=BODY_HTML), [("AUTHORS", sha(AUTHORS))]),
    ],
    "padding or junk after the end is dropped; what reads as a cut attribute is not": [
        (ONE + b"\r\n\0\0", [("AUTHORS", sha(AUTHORS))]),
        (ONE + BASE64_JUNK, [("AUTHORS", sha(AUTHORS))]),
        (ONE + CUT_DATA, kept(ONE + CUT_DATA)),  # junk or a cut attachment: not told apart
        (ONE + CUT_PROPS, [("AUTHORS", sha(AUTHORS)), *kept(ONE + CUT_PROPS)]),
    ],
    "cut short: the whole files, and the original beside them": [
        (TWO, [("AUTHORS", sha(AUTHORS)), ("README", sha(README))]),
        (TWO[:-1], [("AUTHORS", sha(AUTHORS)), *kept(TWO[:-1])]),  # in README's attAttachment
        (TWO[:-300], [("AUTHORS", sha(AUTHORS)), *kept(TWO[:-300])]),  # in README's data
        (TWO[: len(ONE) + 20], [("AUTHORS", sha(AUTHORS)), *kept(TWO[: len(ONE) + 20])]),
        (TWO[: len(ONE) - 40], kept(TWO[: len(ONE) - 40])),  # in AUTHORS' data: no file whole
    ],
    "nothing but the signature": [
        (T.stream(), kept(T.stream())),
        (T.stream(T.file("AUTHORS", AUTHORS)), [("AUTHORS", sha(AUTHORS))]),
    ],
    "a property list claiming four billion properties": [
        (claimed_properties(None), [("REPORT.LOG", sha(LOG))]),
        (claimed_properties(0xFFFFFFFF), kept(claimed_properties(0xFFFFFFFF))),
    ],
    "a property claiming 268 million values": [
        (claimed_values(None), [("REPORT.LOG", sha(LOG))]),
        (claimed_values(0x0FFFFFFF), kept(claimed_values(0x0FFFFFFF))),
    ],
    "a recipient table claiming four billion rows": [
        (claimed_recipients(1), [("REPORT.LOG", sha(LOG))]),
        (claimed_recipients(0xFFFFFFFF), kept(claimed_recipients(0xFFFFFFFF))),
    ],
}


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """Every scenario's messages replayed into one database: (database, files folder)."""
    root = tmp_path_factory.mktemp("tnef")
    folder = root / "in"
    folder.mkdir()
    for s, messages in enumerate(SCENARIOS.values()):
        for m, (data, _) in enumerate(messages):
            raw = outlook(data, TEXT, message_id=f"<s{s}m{m}@acme.example>")
            (folder / f"{s:02d}-{m}.eml").write_bytes(raw)
    db = root / "t.db"
    out = CliRunner().invoke(cli, ["replay", "--db", str(db), "--json", str(folder)])
    assert out.exit_code == 0, out.output
    actions = {json.loads(line)["action"] for line in out.stdout.splitlines()}
    assert actions <= {"ticket", "append"}, actions
    return db, root / "t.db.files"


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_replay_stores_each_file_byte_for_byte(replayed, scenario):
    db, files = replayed
    s = list(SCENARIOS).index(scenario)
    conn = sqlite3.connect(db)
    for m, (_, expected) in enumerate(SCENARIOS[scenario]):
        rows = conn.execute(
            "SELECT a.filename, a.sha256 FROM attachments a JOIN messages USING (message_key)"
            " WHERE messages.message_id = ? ORDER BY a.id",
            (f"<s{s}m{m}@acme.example>",),
        ).fetchall()
        assert rows == expected, f"message {m}"
        for _, digest in rows:  # the bytes on disk are the file's, not a copy of the container
            assert sha((files / digest[:2] / digest).read_bytes()) == digest


# Each budget: how to build a winmail.dat of n units, n that must unpack, n that must not.
BUDGETS: dict[str, tuple[Callable[[int], bytes], int, tuple[int, ...]]] = {
    "objects": (
        lambda n: T.stream(
            *T.head(), *[T.attribute(T.MESSAGE, 0x00060100, b"x")] * n, T.file("A.LOG", LOG)
        ),
        tnef.MAX_OBJECTS - 10,
        (tnef.MAX_OBJECTS + 1, 200_000),  # 200,000 objects: tnefparse alone copies for 10 s
    ),
    "files": (
        lambda n: T.winmail(*[T.file(f"F{i}.LOG", b"%d\n" % i) for i in range(n)]),
        tnef.MAX_FILES,
        (tnef.MAX_FILES + 1,),
    ),
    "values": (
        lambda n: T.stream(
            *T.head(),
            T.attribute(
                T.MESSAGE,
                T.attMsgProps,
                T.props(
                    T.prop(T.PtypInteger32 | T.MULTIPLE, T.PidTagScheduleInfoMonthsBusy, *range(n))
                ),
            ),
            T.file("A.LOG", LOG),
        ),
        tnef.MAX_VALUES - 1_000,
        (tnef.MAX_VALUES + 1,),
    ),
    "bytes": (
        lambda n: T.winmail(T.file("A.LOG", (LOG * (n // len(LOG) + 1))[:n])),
        tnef.MAX_BYTES - 1_000,
        (tnef.MAX_BYTES,),
    ),
}


@pytest.mark.parametrize("budget", list(BUDGETS))
def test_each_budget_holds_at_its_limit(budget, monkeypatch):
    """Up to the limit the files come out; past it the winmail.dat stays, with a defect,
    and the reading stops early (a 22 MB message is parsed in about a second anyway)."""
    build, sound, hostile = BUDGETS[budget]
    with monkeypatch.context() as m:
        m.setattr(tnef, "MAX_SECONDS", 30.0)  # the sound side measures this budget, not time
        email = Email.from_bytes(outlook(build(sound)))
    assert "winmail.dat" not in [a.filename for a in email.attachments]
    assert email.attachments
    for n in hostile:
        data = build(n)
        started = time.perf_counter()
        email = Email.from_bytes(outlook(data))
        assert budget == "bytes" or time.perf_counter() - started < 1.5
        assert [(a.filename, a.sha256) for a in email.attachments] == kept(data), n
        assert any("TNEF not readable" in d for d in email.defects)


def test_the_body_inside_winmail_dat_is_read_when_the_message_has_none():
    """Exchange between its own servers may send the whole message as TNEF."""
    html = Email.from_bytes(outlook(T.winmail(html=BODY_HTML), text=None))
    assert (html.body_kind, html.body) == (
        "html",
        "Gr\u00fc\u00dfe aus Z\u00fcrich: the printer is jammed.",
    )
    plain = Email.from_bytes(outlook(T.winmail(text="Das Drucken geht nicht.\r\n"), text=None))
    assert (plain.body_kind, plain.body.strip()) == ("plain", "Das Drucken geht nicht.")


def test_the_message_s_own_text_wins_over_the_body_inside_winmail_dat():
    both = Email.from_bytes(outlook(T.winmail(T.file("AUTHORS", AUTHORS), html=BODY_HTML)))
    assert (both.body_kind, both.body.strip()) == ("plain", TEXT.strip())
    assert [a.filename for a in both.attachments] == ["AUTHORS"]


def test_the_writer_agrees_with_the_sample_message_of_the_specification():
    """[MS-OXTNEF] 3.1: the signature (%x78.9F.3E.22), then the key, and the lengths and
    checksums of the sample's first attributes, so the writer is checked by the format's
    own figures rather than by the library under test."""
    assert T.stream(key=1) == b"\x78\x9f\x3e\x22\x01\x00"
    sample = [
        (T.attTnefVersion, struct.pack("<I", 0x00010000), 4, 0x0001),
        (T.attOemCodepage, struct.pack("<II", 1252, 0), 8, 0x00E8),
        (T.attMessageClass, b"IPM.Microsoft Mail.Note\0", 24, 0x0831),
        (T.attSubject, b"Simple subject\0", 15, 0x057A),
    ]
    for att_id, data, length, check in sample:
        written = T.attribute(T.MESSAGE, att_id, data)
        assert struct.unpack("<I", written[5:9]) == (length,)
        assert struct.unpack("<H", written[-2:]) == (check,)


def test_the_guards_are_in_tnefparse():
    """If a tnefparse release renames what triage.core.tnef wraps, the hostile cases above would
    run unguarded: this fails first, naming the version to check."""
    assert tnefparse.tnef.TNEFObject is tnef._CountedObject
    assert tnefparse.tnef.decode_mapi is tnef._counted_decode_mapi
    assert tnefparse.mapi.parse_property is tnef._counted_parse_property


def test_a_dat_file_without_the_signature_is_left_alone():
    email = Email.from_bytes(outlook(b"not tnef at all"))
    assert [a.filename for a in email.attachments] == ["winmail.dat"]
