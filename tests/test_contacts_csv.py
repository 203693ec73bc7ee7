"""Contact CSV import: what spreadsheets really send, handled row by row."""

from __future__ import annotations

import contextlib
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.core.contact_rows import CsvError, ImportResult, Rejected, RowReader, parse
from triage.core.contacts import Contact

HEADER = "email,name,company,site,plan,timezone,vip,aliases\n"


def load(text: str, **kwargs) -> ImportResult:
    return parse(text.encode("utf-8"), "contacts.csv", **kwargs)


def test_a_clean_file():
    result = load(
        HEADER
        + "Jane.Doe@Acme.example,Jane Doe,Acme Corp,NYC,Premium,America/New_York,yes,"
        + "jdoe@acme.example;J.Doe@acme.example\n"
        + "bob@globex.example,Bob,Globex,,,,,\n"
    )
    assert result.rejected == () and result.notes == ()
    assert result.rows == (
        Contact(
            "jane.doe@acme.example",
            "Jane Doe",
            "Acme Corp",
            "NYC",
            "premium",
            "America/New_York",
            True,
            ("jdoe@acme.example", "j.doe@acme.example"),
        ),
        Contact("bob@globex.example", "Bob", "Globex"),
    )


def test_only_email_is_required():
    assert load("email\nA@b.example\n").rows == (Contact("a@b.example"),)


def test_utf8_bom_is_skipped():
    result = parse(b"\xef\xbb\xbf" + (HEADER + "a@b.example,Zo\u00eb\n").encode(), "x.csv")
    assert result.rows[0].name == "Zoë" and result.rejected == ()


@pytest.mark.parametrize("delimiter", [";", "\t", "|", ","])
def test_delimiter_is_sniffed_from_the_header(delimiter):
    text = HEADER.replace(",", delimiter) + delimiter.join(
        ["a@b.example", '"Doe, Jane"', "Acme", "", "basic", "Europe/Berlin", "no", "x@b.example"]
    )
    result = load(text)
    assert result.rejected == ()
    assert (result.rows[0].name, result.rows[0].timezone) == ("Doe, Jane", "Europe/Berlin")


def test_windows_and_old_mac_line_endings():
    for newline in ("\r\n", "\r"):
        text = (
            HEADER.replace("\n", newline)
            + f"a@b.example,A{newline}bad{newline}c@b.example,C{newline}"
        )
        result = load(text)
        assert [c.email for c in result.rows] == ["a@b.example", "c@b.example"]
        assert [(r.line, r.raw) for r in result.rejected] == [(3, "bad")]


def test_duplicate_email_rejects_the_later_row():
    result = load(HEADER + "a@b.example,First\nx@b.example,X\nA@B.example,Second\n")
    assert [c.name for c in result.rows] == ["First", "X"]
    assert result.rejected == (Rejected(4, "duplicate of line 2", "A@B.example,Second"),)


def test_alias_already_used_is_rejected():
    result = load(
        HEADER
        + "a@b.example,A,,,,,,al@b.example\nc@b.example,C,,,,,,al@b.example\nal@b.example,Al\n"
    )
    assert [c.email for c in result.rows] == ["a@b.example"]
    assert [(r.line, r.reason) for r in result.rejected] == [
        (3, "alias al@b.example is already used on line 2"),
        (4, "duplicate of line 2"),
    ]


def test_non_utf8_lines_are_read_as_windows_1252_with_a_note():
    data = (
        HEADER.encode()
        + "a@b.example,Jürgen Weber\n".encode("cp1252")
        + b"c@b.example,Zo\xc3\xab\n"
    )
    result = parse(data, "x.csv")
    assert [c.name for c in result.rows] == ["Jürgen Weber", "Zoë"]
    assert result.rejected == ()
    assert result.notes == (
        "x.csv: line 2 is not UTF-8, read as Windows-1252; check the names, and save the "
        "file as 'CSV UTF-8' next time",
    )


def test_many_non_utf8_lines_are_summarised():
    rows = b"".join(f"u{i}@b.example,M\xfcller\n".encode("latin-1") for i in range(8))
    result = parse(HEADER.encode() + rows, "x.csv")
    assert len(result.rows) == 8
    assert "lines 2, 3, 4, 5, 6 and 3 more are not UTF-8" in result.notes[0]


def test_utf16_is_refused_as_a_whole():
    with pytest.raises(CsvError, match=r"x.csv: \[file\] is UTF-16\n  fix: save it as 'CSV UTF-8'"):
        parse((HEADER + "a@b.example\n").encode("utf-16"), "x.csv")


@pytest.mark.parametrize(
    ("email", "reason"),
    [
        ("", "email is empty"),
        ("jane", "email 'jane' is not a valid address"),
        ("jane@", "is not a valid address"),
        ("@acme.example", "is not a valid address"),
        ("jane@@acme.example", "is not a valid address"),
        ("jane@acme", "is not a valid address"),
        ("jane..doe@acme.example", "is not a valid address"),
        (".jane@acme.example", "is not a valid address"),
        ("jane@acme..example", "is not a valid address"),
        ("jane@-acme.example", "is not a valid address"),
        (
            "Jane Doe <jane@acme.example>",
            "must be the bare address; put the person's name in 'name'",
        ),
    ],
)
def test_invalid_email_is_rejected(email, reason):
    result = load(f'email,name\n"{email}",X\n')
    assert result.rows == ()
    assert result.rejected[0].line == 2 and reason in result.rejected[0].reason


def test_invalid_alias_is_rejected():
    result = load(HEADER + "a@b.example,A,,,,,,not-an-address\n")
    assert "alias 'not-an-address' is not a valid address" in result.rejected[0].reason


def test_time_zones_are_checked_and_spelled_canonically():
    result = load(
        HEADER
        + "a@b.example,A,,,,europe/berlin\nb@b.example,B,,,,Mars/Olympus\nc@b.example,C,,,,UTC\n"
    )
    assert [c.timezone for c in result.rows] == ["Europe/Berlin", "UTC"]
    assert result.rejected[0].line == 3
    assert "time zone 'Mars/Olympus' is unknown; use an IANA name" in result.rejected[0].reason


@pytest.mark.parametrize(
    ("value", "vip"),
    [("yes", True), ("YES", True), ("y", True), ("true", True), ("1", True), ("x", True), ("X", True),
     ("no", False), ("n", False), ("false", False), ("0", False), ("", False), (" ", False)],
)  # fmt: skip
def test_vip_accepts_common_booleans(value, vip):
    assert load(HEADER + f"a@b.example,A,,,,,{value}\n").rows[0].vip is vip


def test_vip_that_is_not_a_boolean_is_rejected():
    result = load(HEADER + "a@b.example,A,,,,,maybe\n")
    assert result.rejected[0].reason == "vip 'maybe' is not one of yes/no/true/false/1/0/x or empty"


def test_approved_column_is_optional_and_defaults_to_true():
    result = load("email,approved\na@b.example,no\nb@b.example,\n")
    assert [c.approved for c in result.rows] == [False, True]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,company\nJane,Acme\n", "the header has no 'email' column (found 'name', 'company')"),
        ("jane@acme.example,Jane\n", "the header has no 'email' column"),
        ("\na@b.example\n", "has no header"),
        ("", "has no header"),
        ("email,name,Name\na@b.example,A,A\n", "column 'name' appears twice"),
        ("\x00\r0\n", "the header has no 'email' column"),
    ],
)
def test_missing_or_broken_header_is_a_whole_file_error(text, message):
    with pytest.raises(CsvError) as raised:
        load(text)
    text = str(raised.value)
    assert text.startswith("contacts.csv: [")
    assert message in text
    assert "\n  fix: " in text


def test_missing_email_column_says_how_to_fix_it():
    with pytest.raises(CsvError) as raised:
        load("name,company\nJane,Acme\n")
    assert str(raised.value).endswith(
        "fix: make the first line a header such as email,name,company,site,plan,timezone,vip,aliases"
    )


def test_header_names_are_matched_loosely_and_unknown_ones_noted():
    result = load("E-Mail;Full Name;Time Zone;Department\na@b.example;Ann;Europe/Berlin;Sales\n")
    assert (result.rows[0].name, result.rows[0].timezone) == ("Ann", "Europe/Berlin")
    assert result.notes == ("contacts.csv: columns department are not used",)


def test_too_many_fields_is_rejected_but_trailing_empty_ones_are_fine():
    result = load("email,name\na@b.example,Doe, Jane\nc@b.example,C,,\n")
    assert [c.email for c in result.rows] == ["c@b.example"]
    assert (
        result.rejected[0].reason
        == "has 3 fields but the header has 2; put values containing ',' in double quotes"
    )


def test_blank_lines_are_skipped_and_line_numbers_stay_physical():
    result = load(HEADER + "\n\na@b.example,A\n,,,,\nbad,B\n")
    assert [c.email for c in result.rows] == ["a@b.example"]
    assert [r.line for r in result.rejected] == [6]


def test_an_unclosed_quote_is_one_rejection_naming_its_lines():
    result = load(
        HEADER + 'a@b.example,"Jane\nb@b.example,Bob\nc@b.example,"Carl"\nd@b.example,D\n'
    )
    assert [c.email for c in result.rows] == ["d@b.example"]
    assert result.rejected[0].line == 2
    assert "spans lines 2-4" in result.rejected[0].reason


def test_rows_after_a_multi_line_record_keep_their_physical_numbers():
    result = load(HEADER + 'a@b.example,"A\nB"\nbad,X\n')
    assert [r.line for r in result.rejected] == [2, 4]


def test_allowed_plans():
    text = HEADER + "a@b.example,A,,,Premium\nb@b.example,B,,,gold\nc@b.example,C\n"
    result = load(text, allowed_plans={"premium", "standard", "basic"})
    assert [c.email for c in result.rows] == ["a@b.example", "c@b.example"]
    assert result.rejected[0].reason == "plan 'gold' is not one of: basic, premium, standard"
    assert len(load(text).rows) == 3  # no list, no check


def test_raw_text_is_shortened():
    result = load("email,name\nbad," + "x" * 5000 + "\n")
    assert len(result.rejected[0].raw) == 300 and result.rejected[0].raw.endswith("…")


def test_row_reader_streams():
    reader = RowReader((HEADER + "a@b.example\nbad\n").encode(), "x.csv")
    items = iter(reader)
    assert next(items) == Contact("a@b.example")
    assert isinstance(next(items), Rejected)


def test_a_5_mb_file_imports_quickly():
    """A 100 MB export must stream: 5 MB here, so the suite stays fast."""
    zones = ["Europe/Berlin", "America/New_York", "UTC", ""]
    lines = [HEADER]
    size = n = 0
    while size < 5_000_000:
        lines.append(
            f"user{n}@company{n % 500}.example,User Number {n},Company {n % 500},Site {n % 7},"
            f"{'premium' if n % 3 else 'basic'},{zones[n % 4]},{'yes' if n % 50 == 0 else ''},"
            f"alias{n}@company{n % 500}.example\n"
        )
        size += len(lines[-1])
        n += 1
    lines.append("user1@company1.example,dup\n")
    data = "".join(lines).encode()
    start = time.perf_counter()
    result = parse(data, "big.csv")
    elapsed = time.perf_counter() - start
    assert len(result.rows) == n
    assert [r.reason for r in result.rejected] == ["duplicate of line 3"]
    assert elapsed < 4.0, f"{elapsed:.1f} s for {len(data) / 1e6:.1f} MB"
    assert result.rows[-1].company is result.rows[-501].company  # repeated values shared


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise_anything_but_csv_error(data):
    try:
        result = parse(HEADER.encode() + data, "fuzz.csv")
    except CsvError:
        return
    for contact in result.rows:
        assert "@" in contact.email and contact.email == contact.email.lower()
    assert all(r.line >= 2 for r in result.rejected)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_with_any_header_never_crashes(text):
    with contextlib.suppress(CsvError):
        parse(text.encode("utf-8", "surrogatepass"), "fuzz.csv")
