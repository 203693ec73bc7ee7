"""The parse shortcut for single-part mail gives exactly what the stdlib's parser gives.

`limits.parse` hands a single-part message's body to the Message whole instead of feeding
it through the parser a line at a time; anything it cannot prove the same is parsed in full.
"""

from __future__ import annotations

import email
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import CORPUS, FIXTURES, needs_corpus
from triage.core import limits
from triage.core.limits import MessageError, counting_parser, parse

from .test_labelled import FOLDER as LABELLED
from .test_labelled import needs_set


@pytest.fixture(autouse=True)
def _shortcuts_at_any_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shortcuts are taken from a size on; here on every message, the smallest too."""
    monkeypatch.setattr(limits, "ONE_PART_FROM", 0)
    monkeypatch.setattr(limits, "RUNS_FROM", 0)


def stdlib(raw: bytes, max_parts: int = 1000):
    return email.message_from_bytes(raw, _class=counting_parser(max_parts))


def shape(msg) -> tuple:
    """Everything the parser decides about a message, its parts included."""
    payload = msg._payload
    if isinstance(payload, list):
        payload = tuple(shape(p) for p in payload)
    return (
        type(msg).__name__,
        tuple(msg._headers),
        payload,
        msg.preamble,
        msg.epilogue,
        tuple(type(d).__name__ for d in msg.defects),
        msg.get_default_type(),
        msg.get_unixfrom(),
    )


def same(raw: bytes) -> None:
    assert shape(parse(raw, 1000)) == shape(stdlib(raw))


def test_a_single_part_message_parses_as_the_stdlib_parses_it() -> None:
    raw = (
        b"From: Ann <ann@example.com>\r\nSubject: help\r\nContent-Type: text/plain; "
        b"charset=latin-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\nHall\xe5,\r\n\r\nline\r\n"
    )
    msg = parse(raw, 1000)
    assert msg._payload == raw.split(b"\r\n\r\n", 1)[1].decode("ascii", "surrogateescape")
    assert msg.get_payload(decode=True) == b"Hall\xe5,\r\n\r\nline\r\n"
    same(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"Subject: x\n\nbody\n",  # LF only
        b"Subject: x\r\n\nbody\r\n",  # a bare LF ends the header block
        b"Subject: x\r\r\nX-A: b\r\n\r\nbody",  # a bare CR makes an empty line earlier
        b"Subject: x\r\nno colon here\r\nX-A: b\r\n\r\nbody",  # the body starts early
        b" folded first\r\nSubject: x\r\n\r\nbody",
        b"From nobody Mon Jan  1 00:00:00 2024\nSubject: x\n\nbody",  # an mbox From line
        b"Subject: x\r\n\r\n",  # no body
        b"Subject: x",  # no separator at all
        b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nhi\r\n--b--\r\n",
        b"Subject: x\r\nContent-Type: multipart/mixed\r\n\r\nno boundary\r\n",
        b"Subject: x\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nhi\r\n",
        b"Subject: x\r\nContent-Type: message/delivery-status\r\n\r\nStatus: 5.0.0\r\n\r\n",
        b"Subject: x\r\nContent-Type: text/plain\r\nContent-Type: multipart/mixed; boundary=q"
        b"\r\n\r\n--q\r\n\r\nhi\r\n--q--\r\n",
        b"Subject: \xff\xfe bytes\r\n\r\nbody \x80\x81\r\n",
    ],
)
def test_odd_shapes_parse_as_the_stdlib_parses_them(raw: bytes) -> None:
    same(raw)


_LINE_ENDS = st.sampled_from(["\r\n", "\n", "\r", ""])
_HEADER = st.tuples(
    st.sampled_from(["Subject", "From", "Content-Type", "X-A", " folded", "no colon", ""]),
    st.sampled_from([": ", ":", ""]),
    st.sampled_from(
        [
            "text/plain",
            "multipart/mixed; boundary=b",
            "multipart/alternative",
            "message/rfc822",
            "text/html; charset=utf-8",
            "hello",
            "",
        ]
    ),
    _LINE_ENDS,
).map("".join)
_BODY = st.lists(
    st.sampled_from(
        [
            "--b",
            "--b--",
            "--b  ",
            "Subject: inner",
            "Content-Type: multipart/mixed; boundary=c",
            "--c",
            "--c--",
            "",
            "text",
            "\udc80\udcff",
            "=?utf-8?q?x?=",
            "From x",
            " cont",
            "QUJDREVGR0hJSktMTU5PUA==",
            "QUJDREVGR0hJSktMTU5PUA==",
            "QUJDREVGR0hJSktMTU5PUA==",
            "QUJD",
            "TriageRun0000000",
            "TriageRun",
        ]
    ),
    max_size=16,
).flatmap(
    lambda parts: st.lists(_LINE_ENDS, min_size=len(parts), max_size=len(parts)).map(
        lambda ends: "".join(p + e for p, e in zip(parts, ends, strict=True))
    )
)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(_HEADER, max_size=6),
    st.sampled_from(["\r\n\r\n", "\n\n", "\r\n\n", "\r\r", ""]),
    _BODY,
)
def test_any_message_parses_as_the_stdlib_parses_it(headers, gap, body) -> None:
    raw = ("".join(headers) + gap + body).encode("ascii", "surrogateescape")
    try:
        expected = shape(stdlib(raw))
    except MessageError:
        with pytest.raises(MessageError):
            parse(raw, 1000)
        return
    assert shape(parse(raw, 1000)) == expected


def test_the_fixtures_parse_as_the_stdlib_parses_them() -> None:
    paths = sorted(FIXTURES.glob("*.eml"))
    assert len(paths) > 50
    for path in paths:
        same(path.read_bytes())


@needs_set
def test_the_labelled_set_parses_as_the_stdlib_parses_it() -> None:
    paths = sorted(Path(LABELLED).rglob("*.eml"))
    assert len(paths) >= 150
    for path in paths:
        same(path.read_bytes())


@needs_corpus
def test_the_corpus_parses_as_the_stdlib_parses_it() -> None:
    paths = sorted(CORPUS.rglob("*.eml"))
    assert paths
    for path in paths:
        same(path.read_bytes())


def test_the_part_budget_still_counts() -> None:
    raw = (
        b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\n\r\nx\r\n" * 5
    )
    with pytest.raises(MessageError, match="too_many_parts"):
        parse(raw + b"--b--\r\n", 3)
