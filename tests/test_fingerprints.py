"""Fingerprints are stored: whatever computes them must give the values stored before."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from triage.core.fingerprints import fingerprints


def _as_defined(raw: bytes, sender: str, subject: str, date: str) -> dict[str, str]:
    """The definition, written the plain way: the body after the first empty line, each
    CRLF read as LF, after the lower-cased sender and the subject (and, for the old one,
    the Date header)."""
    crlf, lf = raw.find(b"\r\n\r\n"), raw.find(b"\n\n")
    ends = [(at, n) for at, n in ((crlf, 4), (lf, 2)) if at != -1]
    at, n = min(ends) if ends else (len(raw), 0)
    body = raw[at + n :].replace(b"\r\n", b"\n")
    head = sender.lower().encode("utf-8", "surrogateescape") + b"\0"
    head += subject.encode("utf-8", "surrogateescape") + b"\0"
    old = head + date.strip().encode("utf-8", "surrogateescape") + b"\0"
    return {
        "fingerprint": hashlib.sha256(head + body).hexdigest()[:24],
        "old_fingerprint": hashlib.sha256(old + body).hexdigest()[:24],
    }


def test_a_known_message_keeps_its_stored_values():
    raw = b"From: a@b\r\nSubject: hi\r\n\r\nline one\r\nline two\r\n"
    assert fingerprints(raw, "A@b", "hi", "Tue, 10 Mar 2026 09:12:00 +0000") == {
        "fingerprint": _as_defined(raw, "A@b", "hi", "")["fingerprint"],
        "old_fingerprint": _as_defined(raw, "a@b", "hi", "Tue, 10 Mar 2026 09:12:00 +0000")[
            "old_fingerprint"
        ],
    }
    # the same text with LF line ends, and with one bare CR that stays a CR
    lf = raw.replace(b"\r\n", b"\n")
    assert (
        fingerprints(lf, "a@b", "hi", "")["fingerprint"]
        == fingerprints(raw, "a@b", "hi", "")["fingerprint"]
    )
    bare = raw.replace(b"line one", b"line\rone")
    assert fingerprints(bare, "a@b", "hi", "") != fingerprints(raw, "a@b", "hi", "")


_LINES = st.lists(
    st.sampled_from([b"text", b"", b"\r", b"\r\n", b"\n", b"\r\r\n", b"a\rb", b"x: y"]), max_size=30
)


@settings(max_examples=400, deadline=None)
@given(_LINES, _LINES, st.sampled_from([b"\r\n", b"\n"]))
def test_equal_to_the_definition_for_any_line_ends(head, body, eol):
    raw = b"From: a@b" + eol + b"".join(head) + eol + eol + b"".join(body)
    assert fingerprints(raw, "a@b", "s", "d") == _as_defined(raw, "a@b", "s", "d")
