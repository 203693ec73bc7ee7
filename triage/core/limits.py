"""What one message may cost to read, checked on the raw bytes before parsing.

The stdlib parser is quadratic or worse on some hostile shapes (thousands of
tiny parts, huge parameter lists, millions of lines); these bounds refuse them
with a reason before it runs, and stop it if a budget runs out midway.
"""

from __future__ import annotations

import binascii
import email.header
import email.message
import email.policy
import re
from dataclasses import dataclass

from triage.errors import RecordedError

MAX_BYTES = 25 * 1024 * 1024
MAX_DEPTH = 20
MAX_PARTS = 1000
MAX_HEADER_BYTES = 1024 * 1024
MAX_BODY_CHARS = 1_000_000
# The stdlib parser reads a line at a time (about a microsecond each) and parses
# MIME parameters in quadratic time: both are bounded before it runs.
MAX_LINES = 1_000_000
MAX_HEADER_FIELDS = 20_000  # in the message and all its parts
MAX_MIME_HEADER = 16 * 1024  # one Content-Type / Content-Disposition, folded lines included
MAX_MIME_PARAMS = 256  # ";" in one of them (RFC 2231 continuations included)
BARE_CR = re.compile(rb"\r(?!\n)")  # a CR that does not start a CRLF
# A Content-Type or Content-Disposition line with its folded continuations, anywhere,
# searched for in the lowercased bytes: a literal prefix lets the regex engine skip
# ahead, where a case-insensitive anchored pattern tries every line (10x slower).
_MIME_PARAM_HEADER = re.compile(
    rb"content-(?:type|disposition)[ \t]*:[^\r\n]*(?:(?:\r\n?|\n)[ \t][^\r\n]*)*"
)


class MessageError(RecordedError, ValueError):
    """The bytes cannot be read as an email; `reason` is a short stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one message may cost to read."""

    max_bytes: int = MAX_BYTES
    max_depth: int = MAX_DEPTH
    max_parts: int = MAX_PARTS


def split_header_block(raw: bytes) -> bytes:
    """The bytes before the first empty line (the whole input when there is none)."""
    return raw[: header_end(raw)]


def header_end(raw: bytes) -> int:
    """Where the first empty line starts; the second search stops there (no body scan)."""
    crlf = raw.find(b"\r\n\r\n")
    lf = raw.find(b"\n\n", 0, len(raw) if crlf == -1 else crlf)
    if lf == -1:
        return len(raw) if crlf == -1 else crlf
    return lf


def precheck(raw: bytes, limits: Limits) -> None:
    if not raw or raw.isspace():
        raise MessageError("empty", "the message has no bytes")
    if len(raw) > limits.max_bytes:
        raise MessageError(
            "too_large", f"{len(raw):,} bytes is over the limit of {limits.max_bytes:,}"
        )
    head = split_header_block(raw)
    if len(head) > MAX_HEADER_BYTES:
        raise MessageError("header_too_large", f"{len(head):,} bytes of headers")
    if b"\x00" in head:
        raise MessageError("bad_header", "a NUL byte in the header block")
    if BARE_CR.search(head):
        raise MessageError("bad_header", "a bare CR in the header block")
    # Each multipart level needs its own boundary parameter; counting them is a
    # cheap upper bound on depth and parts before the recursive parser runs.
    low = raw.lower()
    boundaries = low.count(b"boundary=")
    if boundaries > limits.max_parts:
        raise MessageError("too_many_parts", f"{boundaries} multipart boundaries")
    if len(raw) > MAX_LINES:  # every line ends in at least one byte: fewer bytes, fewer lines
        lines = raw.count(b"\n") + raw.count(b"\r")
        if lines > MAX_LINES:  # CRLF counted twice above: count exactly only when it matters
            lines -= raw.count(b"\r\n")
        if lines > MAX_LINES:
            raise MessageError(
                "too_many_lines", f"{lines:,} lines is over the limit of {MAX_LINES:,}"
            )
    total = 0
    for found in _MIME_PARAM_HEADER.finditer(low):
        start = found.start()
        if start and low[start - 1] not in b"\r\n":
            continue  # not at the start of a line (the parser also ends lines at a bare CR)
        header = found.group()
        total += len(header)
        params = header.count(b";")
        if len(header) > MAX_MIME_HEADER or params > MAX_MIME_PARAMS:
            name = header.split(b":", 1)[0].decode("ascii", "replace")
            raise MessageError(
                "bad_header",
                f"a {name} header of {len(header):,} bytes and {params:,} parameters (limits: "
                f"{MAX_MIME_HEADER:,} bytes, {MAX_MIME_PARAMS} parameters)",
            )
        if total > MAX_HEADER_BYTES:
            raise MessageError("header_too_large", "over 1 MiB of MIME part headers")


class _TextHeaders(email.policy.Compat32):
    """compat32, except that a header is always read back as text, never as a `Header`.

    compat32 hands back an `email.header.Header` for a header holding raw 8-bit
    bytes, and code that uses it as text raises: the stdlib's own `set_param` joined
    one, and a person's mail ended as `pipeline_error`. The text is what `str()` of
    that `Header` gives (each undecodable byte a U+FFFD), which is what every reader
    that converted it (the stdlib's, mail-parser's, ours) saw already. The bytes as
    they came stay in `raw_items()`, which `triage.core.headertext` reads best effort.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        fetched = super().header_fetch_parse(name, value)
        return str(fetched) if isinstance(fetched, email.header.Header) else fetched


TEXT_HEADERS = _TextHeaders()


class _Part(email.message.Message):
    """A message or MIME part whose parser stops when the message's budget is spent.

    It also remembers its content type: the parser, mail-parser and our walk ask
    for it some 20 times per message, and every answer scans all the headers.
    """

    _budget: list[int]  # [parts left, header fields left], shared by every part of one message
    _ctype: str | None = None

    def set_raw(self, name: str, value: str) -> None:
        self._budget[1] -= 1
        if self._budget[1] < 0:
            raise MessageError(
                "too_many_headers", f"more than {MAX_HEADER_FIELDS:,} header fields in all parts"
            )
        self._ctype = None
        super().set_raw(name, value)

    def get_payload(self, i: int | None = None, decode: bool = False) -> object:
        """The stdlib's payload, except that uuencoded lines never decode to more than they carry."""
        if decode and i is None and isinstance(self._payload, str):
            cte = str(self.get("content-transfer-encoding", "")).lower()  # as the stdlib reads it
            if cte in _UUENCODE:
                encoded = self._payload.encode("utf-8", "surrogateescape")
                try:
                    return uudecode(encoded)
                except ValueError:  # no begin line, or cut short: the stdlib keeps the bytes
                    return encoded
        return super().get_payload(i, decode)

    def get_content_type(self) -> str:
        if self._ctype is None:
            self._ctype = super().get_content_type()
        return self._ctype

    # Everything that can change the answer forgets it.
    def __setitem__(self, name: str, val: object) -> None:
        self._ctype = None
        super().__setitem__(name, val)

    def __delitem__(self, name: str) -> None:
        self._ctype = None
        super().__delitem__(name)

    def replace_header(self, _name: str, _value: object) -> None:
        self._ctype = None
        super().replace_header(_name, _value)

    def set_default_type(self, ctype: str) -> None:
        self._ctype = None
        super().set_default_type(ctype)


_UUENCODE = ("x-uuencode", "uuencode", "uue", "x-uue")


def uudecode(encoded: bytes) -> bytes:
    """uuencoded lines to bytes, each line at most the 3 bytes in 4 its letters carry.

    A line's first letter says how many bytes it holds (up to 45), and the stdlib's
    decoding (`binascii.a2b_uu`) pads what the line lacks with zeros: a line of one
    letter, "M", became 45 bytes, so 25 MiB of mail could make an attachment of over 500 MiB.
    Otherwise as the stdlib decodes: from the first `begin MODE` line to `end`;
    ValueError without a begin line or at an empty line.
    """
    lines = iter(encoded.splitlines())
    for line in lines:
        mode = line.removeprefix(b"begin ").partition(b" ")[0]
        if line.startswith(b"begin ") and mode and all(c in b"01234567" for c in mode):
            break
    else:
        raise ValueError("no begin line")
    out = []
    for line in lines:
        if not line:
            raise ValueError("uuencoded data cut short")
        if line.strip(b" \t\r\n\f") == b"end":
            break
        carried = (len(line) - 1) * 3 // 4
        try:
            decoded = binascii.a2b_uu(line)
        except binascii.Error:  # letters past the count (broken encoders): only the counted ones
            decoded = binascii.a2b_uu(line[: (((line[0] - 32) & 63) * 4 + 5) // 3])
        out.append(decoded[:carried])
    return b"".join(out)


def counting_parser(limit: int):
    """A message factory for the stdlib parser that stops it after `limit` parts.

    Without it a message of tiny parts under one boundary (100,000 in a megabyte)
    is parsed to the end before `_walk` can count them; and each header field
    costs every later lookup on its part, so their number is bounded too.
    """
    budget = [limit + 1, MAX_HEADER_FIELDS]  # FeedParser calls the factory once to probe it

    def factory(policy: email.policy.Policy = TEXT_HEADERS) -> email.message.Message:
        budget[0] -= 1
        if budget[0] < 0:
            raise MessageError("too_many_parts", f"more than {limit} MIME parts")
        part = _Part(policy)
        part._budget = budget
        return part

    return factory


# The parser decides these from the headers alone; every other message is one part.
_CONTAINERS = ("multipart", "message")
# Four or more lines after a line break that the parser can only copy into a body, a
# preamble or an epilogue: not empty, no colon (so no header, nor `name:` lookalike), no
# leading space or tab (a folded header), no leading "-" (a boundary), no mbox "From ".
# Each run is parsed as one such line. A literal first byte keeps the scan quick.
_RUN = re.compile(rb"\n((?:(?!From )[^ \t\r\n:-][^\r\n:]*+(?:\r\n|\n)){4,})")
_TOKEN = b"TriageRun"
_TOKEN_TEXT = _TOKEN.decode()
_TOKENS = re.compile(_TOKEN_TEXT + r"(\d{7})")


# From these sizes on the shortcuts of `parse` cost less than the lines they skip: below,
# a one-part message has too few body lines to matter, and finding and putting back a
# container's runs cost more than parsing them (~15 µs a message of 2-8 kB).
ONE_PART_FROM = 4_096
RUNS_FROM = 8_192


def parse(raw: bytes, max_parts: int) -> email.message.Message:
    """The stdlib parser's Message for `raw`, the part budget of `counting_parser` kept.

    The parser reads a line at a time (about a microsecond each) and only copies the
    lines of a body. A one-part message: its header block is parsed and the rest handed
    over whole, the same string. A container: each run of body lines is parsed as one
    line and put back after. Anything else, anything these cannot prove the same, and
    a message too small for them to pay (`ONE_PART_FROM`, `RUNS_FROM`) is parsed in full
    (tests/test_parsing.py holds them equal on generated and real mail).
    """
    if len(raw) >= ONE_PART_FROM:
        msg = _shortcut(raw, max_parts)
        if msg is not None:
            return msg
    return email.message_from_bytes(raw, _class=counting_parser(max_parts), policy=TEXT_HEADERS)


def _shortcut(raw: bytes, max_parts: int) -> email.message.Message | None:
    """`parse`'s reading without the body's lines, or None where it cannot prove it the same."""
    end = header_end(raw)
    if not raw.startswith((b"\r\n\r\n", b"\n\n"), end):  # no empty line ends the headers
        return None
    start = end + (4 if raw.startswith(b"\r\n\r\n", end) else 2)
    block = raw[:start]
    lowered = block.lower()
    if b"multipart" in lowered or b"message/" in lowered:
        return _parse_runs(raw, max_parts) if len(raw) >= RUNS_FROM and _TOKEN not in raw else None
    head = email.message_from_bytes(block, _class=counting_parser(max_parts), policy=TEXT_HEADERS)
    if (
        head.defects
        or head._payload != ""  # noqa: SLF001 - the parser ended at our empty line
        or head.get_content_maintype() in _CONTAINERS
    ):
        return None
    head._payload = raw[start:].decode("ascii", "surrogateescape")  # noqa: SLF001
    return head


def _parse_runs(raw: bytes, max_parts: int) -> email.message.Message | None:
    """Parse with every run of body lines as one line, then put the runs back (None:
    no run, or a placeholder not found where it was put: the caller parses in full)."""
    runs: list[str] = []

    def placeholder(found: re.Match[bytes]) -> bytes:
        text = found.group(1).decode("ascii", "surrogateescape")
        eol = "\r\n" if text.endswith("\r\n") else "\n"
        runs.append(text[: -len(eol)])  # its last line ending stays with the placeholder
        return b"\n%s%07d%s" % (_TOKEN, len(runs) - 1, eol.encode())

    collapsed = _RUN.sub(placeholder, raw)
    if not runs:
        return None
    msg = email.message_from_bytes(
        collapsed, _class=counting_parser(max_parts), policy=TEXT_HEADERS
    )
    put = 0

    def back(found: re.Match[str]) -> str:
        nonlocal put
        put += 1
        return runs[int(found.group(1))]

    for part in msg.walk():
        for name in ("_payload", "preamble", "epilogue"):
            value = getattr(part, name)
            if isinstance(value, str) and _TOKEN_TEXT in value:
                setattr(part, name, _TOKENS.sub(back, value))
    return msg if put == len(runs) else None
