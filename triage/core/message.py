"""Bytes -> a frozen `Email`: bounded, defensive, never trusting the sender.

mail-parser does the MIME work (bodies, attachments, charsets); the stdlib
parser underneath it is fed only after cheap checks on the raw bytes, so hostile
input is refused before it costs anything. Addresses are read from the raw
headers (`triage.addresses`): RFC 2047 decodes display names only.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.message
import email.policy
import hashlib
import logging
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.header import Header, decode_header
from email.utils import parsedate_to_datetime

import mailparser

from triage.core import charsets, tnef
from triage.core.addresses import addresses, first_mailbox, unfold
from triage.core.htmltext import html_to_text
from triage.core.limits import (
    MAX_BODY_CHARS,
    Limits,
    MessageError,
    counting_parser,
    header_end,
    precheck,
)
from triage.core.values import by_position

# mail-parser logs every unhandled part type at WARNING; those are facts about
# the sender's message, not problems of ours.
logging.getLogger("mailparser").setLevel(logging.ERROR)

# Text handed to the stdlib's RFC 2047 decoding (quadratic in the number of
# encoded words) at a time.
DECODE_PIECE = 16 * 1024

# Headers the filters, conversation and priority steps read, kept verbatim.
KEPT_HEADERS = (
    "auto-submitted",
    "precedence",
    "x-autoreply",
    "x-autorespond",
    "x-auto-response-suppress",
    "list-id",
    "list-unsubscribe",
    "return-path",
    "x-loop",
    "x-failed-recipients",
    "in-reply-to",
    "references",
    "x-priority",
    "importance",
    "priority",
    "authentication-results",
    "user-agent",  # the evidence model: a mail program a person types in, or mail software
    "x-mailer",
)
# Of those, the ones kept as they came: structured fields (addresses, Message-IDs, the
# receiving server's results), where RFC 2047 has no place and decoding would let an
# encoded word spell a value.
RAW_HEADERS = frozenset({"return-path", "in-reply-to", "references", "authentication-results"})

# RFC 5322 lines end by 998 characters: a longer "id" is no Message-ID, and would be
# copied into every acknowledgement's In-Reply-To and References.
_MSGID = re.compile(r"<([^<>\s]{1,998})>")
_SURROGATES = re.compile("[\ud800-\udfff]")
# Bulk mailers' HTML: how many links and images, and how many links carry a per-recipient
# token (a long opaque path or query segment), a click redirect or campaign parameters.
# Possessive: "href=" and a long run of spaces would otherwise be tried in quadratic time.
_HREF = re.compile(r"""href\s*+=\s*+["']?+\s*+(https?://[^"'\s>]{1,2000})""", re.IGNORECASE)
_IMG = re.compile(r"<img\b", re.IGNORECASE)
_TRACKING = re.compile(
    r"[?&/=][A-Za-z0-9_%.-]{24,}|[?&]utm_|/(?:click|track|trk|ls/click|wf/click|c|r)/"
    r"|[?&](?:e|mc_eid|mkt_tok|_hsenc)=",
    re.IGNORECASE,
)
# HTML read for those counts: enough for any newsletter; a bigger part is not read further.
_MARKUP_SCAN = 1_000_000


@by_position
@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    size: int
    sha256: str
    data: bytes = field(repr=False, compare=False)


@by_position
@dataclass(frozen=True, slots=True)
class Email:
    """What the pipeline knows about one message; built by `Email.from_bytes`."""

    key: str
    message_id: str | None
    from_addr: str
    from_name: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    reply_to: tuple[str, ...]
    delivered_to: tuple[str, ...]
    subject: str
    date: datetime | None
    body: str
    body_kind: str  # plain | html | none
    attachments: tuple[Attachment, ...]
    headers: dict[str, tuple[str, ...]]
    content_type: str
    report_types: tuple[str, ...]
    part_types: tuple[str, ...]
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    size: int
    sha256: str
    defects: tuple[str, ...] = ()
    attached_from: str = ""  # From header of the first attached message (message/rfc822)
    fingerprint: str = ""  # what the author wrote, not how it travelled (see `fingerprint`)
    header_names: frozenset[str] = frozenset()  # every header present, lower-case
    old_fingerprint: str = ""  # the one earlier releases stored: Date included
    links: int = 0  # http(s) links in the HTML body (filled with the bodies)
    tracking_links: int = 0  # of those, links that carry a per-recipient token or click redirect
    images: int = 0  # <img> tags in the HTML body

    @property
    def from_display(self) -> str:
        """`Name <address>`, the form the documented filter reads."""
        return f"{self.from_name} <{self.from_addr}>" if self.from_name else self.from_addr

    def header(self, name: str) -> tuple[str, ...]:
        return self.headers.get(name.lower(), ())

    def first(self, name: str) -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else ""

    @classmethod
    def from_bytes(cls, raw: bytes, limits: Limits = Limits()) -> Email:
        """Parse one message with every header kept; raise `MessageError` for what must be
        quarantined. (The pipeline keeps only the headers its rules read: `read`.)"""
        return read(raw, limits, None).complete()


def _decode(value: object, hint: str | None = None) -> str:
    """A header value as one line of text; RFC 2047 decoded, unknown charsets best-effort.

    Raw 8-bit bytes in a header (no RFC 2047) are tried as UTF-8, then as the
    charset the message declares for its text (`hint`), then as Latin-1.
    """
    if isinstance(value, Header):
        text = "".join(_chunk(c, cs, hint) for c, cs in decode_header(value))
    else:
        text = _undo_surrogates(str(value), hint)
        if "=?" in text:
            text = "".join(
                _decode_words(piece, hint) + sep for piece, sep in _pieces(text, DECODE_PIECE)
            )
    if "\x1b" in text:  # raw ISO-2022-JP, which no charset declaration announces
        text = charsets.unescape(text)
    return " ".join(text.split())


def _decode_words(text: str, hint: str | None) -> str:
    try:
        chunks = decode_header(text)
    except Exception:  # noqa: BLE001 - a header the stdlib cannot split stays literal
        chunks = [(text, None)]
    return "".join(_chunk(c, cs, hint) for c, cs in chunks)


def _pieces(text: str, size: int) -> list[tuple[str, str]]:
    """`text` as (piece, separator) pairs of about `size` characters, cut at a space if one is near.

    The stdlib joins the bytes of adjacent encoded words one by one, and pops
    its word list from the front (both quadratic): a long header is decoded
    piece by piece, best effort at the seams.
    """
    out = []
    start = 0
    while len(text) - start > size:
        cut = text.find(" ", start + size, start + 2 * size)
        if cut == -1:
            out.append((text[start : start + size], ""))
            start += size
        else:
            out.append((text[start:cut], " "))
            start = cut + 1
    out.append((text[start:], ""))
    return out


def _clean(text: str) -> str:
    """`text` without lone surrogates (some codecs make them; SQLite and UTF-8 refuse them)."""
    return text if text.isascii() else _SURROGATES.sub("\ufffd", text)


def _undo_surrogates(text: str, hint: str | None) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _chunk(text.encode("ascii", "surrogateescape"), None, hint)


def _chunk(data: bytes | str, charset: str | None, hint: str | None = None) -> str:
    if isinstance(data, str):
        return _clean(data)
    if charset in (None, "unknown-8bit"):
        for guess in ("utf-8", charsets.codec_for(hint)):
            if guess:
                try:
                    return _clean(data.decode(guess))
                except (UnicodeError, LookupError, ValueError):
                    pass
        return data.decode("latin-1")
    return _clean(charsets.decode(data, charset))


def _walk(
    msg: email.message.Message, limits: Limits
) -> tuple[list[str], list[str], str | None, str, list[tuple[email.message.Message, str | None]]]:
    """Content types and report types of every part, and the first declared text charset.

    Also the From header of the first attached message, for hand-forwarded mail, and
    the body text parts whose charset `charsets.settle` must look at (none declared,
    an ASCII name, or a name with a wider superset).
    Bounded in depth and count; iterative, so nesting cannot exhaust the stack.
    """
    part_types: list[str] = []
    report_types: list[str] = []
    hint: str | None = None
    attached_from = ""
    unsettled: list[tuple[email.message.Message, str | None]] = []
    stack: list[tuple[email.message.Message, int, bool]] = [(msg, 0, False)]
    while stack:
        part, depth, attached = stack.pop()
        if depth > limits.max_depth:
            raise MessageError("too_deep", f"MIME nesting deeper than {limits.max_depth}")
        if len(part_types) >= limits.max_parts:
            raise MessageError("too_many_parts", f"more than {limits.max_parts} MIME parts")
        ctype = _clean(part.get_content_type())
        part_types.append(ctype)
        if ctype.startswith("text/"):
            charset = part.get_param("charset")
            declared = charset.lower() if isinstance(charset, str) and charset.isascii() else None
            if hint is None:
                hint = declared
            if (
                not attached
                and (declared is None or declared in _UNSETTLED)
                and part.get_content_disposition() != "attachment"
            ):
                unsettled.append((part, declared))
        if ctype == "multipart/report":
            report = part.get_param("report-type")
            if isinstance(report, str) and report:
                report_types.append(_clean(report.strip().lower()))
        # Only containers: the payload of a leaf would be decoded with its declared charset.
        payload = part.get_payload() if part.is_multipart() else None
        if (
            ctype == "message/rfc822"
            and not attached_from
            and isinstance(payload, list)
            and payload
        ):
            inner = payload[0]
            if isinstance(inner, email.message.Message):
                attached_from = str(inner.get("from", "") or "")
        if isinstance(payload, list):
            inner_attached = attached or ctype == "message/rfc822"
            stack.extend((child, depth + 1, inner_attached) for child in reversed(payload))
    return part_types, report_types, hint, attached_from, unsettled


_UNSETTLED = charsets.ASCII_NAMES | charsets.SUPERSETS.keys()


def _flatten(part: email.message.Message) -> str:
    """An attached message as text, in time linear in its size, with its own 8-bit bytes.

    mail-parser flattens each attached message with `as_string()`, which re-encodes
    a header holding raw 8-bit bytes as one RFC 2047 line, joining the line again
    for every character: 8 kB of such a header cost 0.2 s, and it is paid again at
    every level of nesting (a 12 kB message found by the fuzz run cost 1.7 s).
    `as_bytes()` writes those bytes back as they came.
    """
    try:
        return part.as_bytes().decode("utf-8", "surrogateescape")
    except Exception:  # noqa: BLE001 - mail-parser's own way, whatever it costs
        return _as_string_safe(part)


# mail-parser's walk calls this module global for every attached message; nothing else
# in the process uses mail-parser's walk.
_as_string_safe = mailparser.core.as_string_safe
mailparser.core.as_string_safe = _flatten


class _Lean(mailparser.MailParser):
    """mail-parser's MIME walk (bodies, attachments, charsets) without the rest.

    Its header views (every address header, every Received line, dates, and two
    JSON-ready copies of the message) cost more than the walk itself and we read
    those headers ourselves. If a mail-parser release renames what is reset here,
    the walk raises and `_parse` falls back to the stdlib reading, recorded as a
    defect (a test watches for that).
    """

    def _reset(self) -> None:
        self._attachments, self._text_plain, self._text_html, self._text_not_managed = (
            [],
            [],
            [],
            [],
        )
        self._defects, self._defects_categories, self._has_defects = [], set(), False
        self._mail, self._mail_partial, self._header_index = {}, {}, {}
        self._address_headers, self._address_header_defects = {}, []
        self._date, self._timezone, self._date_header_defects = None, 0, []
        self._received, self._received_header_defects = [], []

    def _make_mail(self, complete: bool = True) -> dict:
        return {}


def _ids(values: tuple[str, ...]) -> tuple[str, ...]:
    seen: list[str] = []
    for value in values:
        for found in _MSGID.findall(_undo_surrogates(value, None)):
            token = f"<{found}>"
            if token not in seen:
                seen.append(token)
    return tuple(seen)


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _attachment(item: dict) -> Attachment:
    payload = item.get("payload") or ""
    if item.get("binary"):
        try:
            data = base64.b64decode(payload)
        except (binascii.Error, ValueError):
            data = payload.encode("utf-8", "replace")
    else:
        try:  # an attached message keeps its 8-bit bytes (see `_flatten`)
            data = str(payload).encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            data = str(payload).encode("utf-8", "replace")
    return Attachment(
        filename=_clean(str(item.get("filename") or "attachment")),
        content_type=_clean(str(item.get("mail_content_type") or "application/octet-stream")),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
    )


def _file(filename: str, content_type: str, data: bytes) -> Attachment:
    """An attachment unpacked from a container (winmail.dat)."""
    return Attachment(
        _clean(filename), content_type, len(data), hashlib.sha256(data).hexdigest(), data
    )


def _file_parts(a: Attachment) -> tuple[str, str, bytes]:
    return a.filename, a.content_type, a.data


def _bodies_fallback(msg: email.message.Message) -> tuple[list[str], list[str], list[Attachment]]:
    """Text, HTML and attachments straight from the stdlib tree.

    Used only when mail-parser itself raises on a message the stdlib can
    read (it does on some real bounces): better a plain reading than none.
    """
    plain: list[str] = []
    html: list[str] = []
    files: list[Attachment] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        data = part.get_payload(decode=True) or b""
        if not isinstance(data, bytes):
            data = str(data).encode("utf-8", "replace")
        name = part.get_filename()
        ctype = part.get_content_type()
        if name or part.get_content_disposition() == "attachment":
            files.append(
                Attachment(
                    _clean(str(name or "attachment")),
                    _clean(ctype),
                    len(data),
                    hashlib.sha256(data).hexdigest(),
                    data,
                )
            )
            continue
        text = _unescaped(charsets.decode(data, part.get_content_charset() or "utf-8"))
        if ctype == "text/html":
            html.append(text)
        elif ctype.startswith("text/"):
            plain.append(text)
    return plain, html, files


class Reading:
    """A message read up to its headers and MIME outline; the bodies on demand.

    Most robots are recognised by a header, so the filters run on `head` and
    only what they cannot decide from it (and every ticket) pays for `complete`.
    """

    __slots__ = ("_msg", "head", "_full", "_unsettled")

    def __init__(
        self,
        msg: email.message.Message,
        head: Email,
        unsettled: list[tuple[email.message.Message, str | None]] | None = None,
    ) -> None:
        self._msg = msg
        self.head = head
        self._full: Email | None = None
        self._unsettled = unsettled or []

    def complete(self) -> Email:
        """`head` with body, attachments and defects filled in (computed once)."""
        if self._full is None:
            self._full = _with_bodies(self._msg, self.head, self._unsettled)
        return self._full


def read(
    raw: bytes, limits: Limits = Limits(), keep: frozenset[str] | None = frozenset()
) -> Reading:
    """Headers and MIME outline of `raw`; raise `MessageError` for what must be quarantined.

    `keep` names further headers (lower case) to keep beside KEPT_HEADERS: those
    the filter rules read, so a rule on any header is one that can fire. None keeps all.
    """
    precheck(raw, limits)
    try:
        msg = email.message_from_bytes(raw, _class=counting_parser(limits.max_parts))
    except RecursionError:
        raise MessageError("too_deep", "MIME nesting too deep to parse") from None
    grouped: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        grouped.setdefault(name.lower(), []).append(value)
    if not grouped.keys() & _EMAIL_HEADERS:
        raise MessageError("not_email", "no From, To, Subject, Date or Message-ID header")
    part_types, report_types, hint, attached_from, unsettled = _walk(msg, limits)
    if hint is None or hint in charsets.ASCII_NAMES:
        hint = _header_charset(grouped) or hint

    def values(name: str) -> list[str]:
        return [_decode(v, hint) for v in grouped.get(name, ())]

    def verbatim(name: str) -> list[str]:
        return [_raw_text(v, hint) for v in grouped.get(name, ())]

    def kept(name: str) -> tuple[str, ...]:
        return tuple(verbatim(name) if name in RAW_HEADERS else values(name))

    headers = {name: kept(name) for name in KEPT_HEADERS if name in grouped}
    for name in grouped if keep is None else keep:
        if name in grouped and name not in headers:
            headers[name] = kept(name)
    from_name, from_addr = mailbox(verbatim("from"), hint)
    message_ids = _ids(tuple(grouped.get("message-id", ())))
    message_id = message_ids[0] if message_ids else None
    sha = hashlib.sha256(raw).hexdigest()
    subject = values("subject")
    date = grouped.get("date")
    head = Email(
        key=message_id or f"sha256:{sha}",
        message_id=message_id,
        from_addr=from_addr,
        from_name=from_name,
        to=addresses(verbatim("to")),
        cc=addresses(verbatim("cc")),
        reply_to=addresses(verbatim("reply-to")),
        delivered_to=addresses(verbatim("delivered-to") + verbatim("x-original-to")),
        subject=subject[0] if subject else "",
        date=_date(date[0]) if date else None,
        body="",
        body_kind="deferred",
        attachments=(),
        headers=headers,
        content_type=msg.get_content_type(),
        report_types=tuple(report_types),
        part_types=tuple(part_types),
        in_reply_to=_ids(headers.get("in-reply-to", ())),
        references=_ids(headers.get("references", ())),
        size=len(raw),
        sha256=sha,
        attached_from=_raw_text(attached_from, hint) if attached_from else "",
        **_fingerprints(raw, from_addr, subject[0] if subject else "", date[0] if date else ""),
        header_names=frozenset(grouped),
    )
    return Reading(msg, head, unsettled)


def _header_charset(grouped: dict[str, list[str]]) -> str | None:
    """One guess for the raw 8-bit bytes in this message's headers, when no text part
    declares a charset to read them with (None when every header is ASCII)."""
    raw = [
        v for values in grouped.values() for v in values if isinstance(v, str) and not v.isascii()
    ]
    if not raw:
        return None
    try:
        data = "\n".join(raw).encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return None
    return charsets.guess(data)


def mailbox(values: list[str], hint: str | None = None) -> tuple[str, str]:
    """(display name, address) of the first mailbox in raw header values (From, an attached From).

    The address is parsed from the text as it came; only the name is RFC 2047 decoded,
    so an encoded word can never become (or add) an address.
    """
    name, address = first_mailbox(values)
    if "=?" in name:
        name = _decode(name, hint)
    return name.strip('"').strip(), address


def _raw_text(value: object, hint: str | None) -> str:
    """A header value as it came, on one line: 8-bit bytes read as text, nothing decoded."""
    return unfold(_undo_surrogates(str(value), hint))


def fingerprint(raw: bytes, sender: str, subject: str) -> str:
    """A hash of author, subject and body bytes, blind to transport and date headers.

    Two copies of one message (a re-fetch, a second delivery route, a relay or a
    client that rewrote Date) agree; two different messages that reuse a
    Message-ID (some clients and tests do) differ in what they say.
    """
    return _fingerprints(raw, sender, subject, "")["fingerprint"]


def _fingerprints(raw: bytes, sender: str, subject: str, date: str) -> dict[str, str]:
    """`fingerprint`, and the one releases before it stored (the Date header included).

    The old one is kept beside the new so that a message stored by an earlier
    release and fetched again after an upgrade is still known as a duplicate.
    """
    end = header_end(raw)
    gap = 2 if raw.startswith(b"\n\n", end) else 4
    body = raw[end + gap :] if end < len(raw) else b""
    body = body.replace(b"\r\n", b"\n")
    h = hashlib.sha256()
    for part in (sender.lower(), subject):
        h.update(part.encode("utf-8", "surrogateescape") + b"\0")
    old = h.copy()
    old.update(date.strip().encode("utf-8", "surrogateescape") + b"\0")
    h.update(body)
    old.update(body)
    return {"fingerprint": h.hexdigest()[:24], "old_fingerprint": old.hexdigest()[:24]}


def _with_bodies(
    msg: email.message.Message,
    head: Email,
    unsettled: list[tuple[email.message.Message, str | None]] = (),  # type: ignore[assignment]
) -> Email:
    defects: list[str] = list(charsets.settle(unsettled))
    try:
        parsed = _Lean(msg)
        plain = [_unescaped(t) for t in parsed.text_plain]
        html = [_unescaped(t) for t in parsed.text_html]
        files = [_attachment(a) for a in parsed.attachments]
    except RecursionError:
        raise MessageError("too_deep", "MIME nesting too deep to parse") from None
    except Exception as exc:  # noqa: BLE001 - mail-parser bugs must not lose a message
        defects.append(f"mail-parser failed ({type(exc).__name__}); read with the stdlib")
        plain, html, files = _bodies_fallback(msg)
    files, tnef_text, tnef_html, notes = tnef.expand(files, _file, _file_parts)
    defects.extend(notes)
    if not plain and not html:  # Outlook may send the body only inside winmail.dat
        plain, html = ([tnef_text] if tnef_text else []), ([tnef_html] if tnef_html else [])
    if plain:
        body, kind = "\n".join(plain), "plain"
    elif html:
        body, kind = html_to_text("\n".join(html)), "html"
    else:
        body, kind = "", "none"
    if len(body) > MAX_BODY_CHARS:
        body = body[:MAX_BODY_CHARS]
        defects.append(f"body cut at {MAX_BODY_CHARS:,} characters")
    body = _clean(body)
    links, tracking, images = _markup_counts(html)
    return replace(
        head,
        body=body,
        body_kind=kind,
        attachments=tuple(files),
        defects=tuple(defects),
        links=links,
        tracking_links=tracking,
        images=images,
    )


def _markup_counts(html: list[str]) -> tuple[int, int, int]:
    """Links, tracking links and images of the HTML parts (the filters' density fields)."""
    if not html:
        return 0, 0, 0
    markup = "\n".join(html)[:_MARKUP_SCAN]
    hrefs = _HREF.findall(markup)
    tracking = sum(1 for h in hrefs if _TRACKING.search(h))
    return len(hrefs), tracking, len(_IMG.findall(markup))


def _unescaped(text: str) -> str:
    """mail-parser hands 7-bit ISO-2022-JP text back as escape codes, declared or not."""
    return charsets.unescape(text) if "\x1b" in text else text


_EMAIL_HEADERS = frozenset(
    {"from", "to", "subject", "date", "message-id", "received", "return-path", "sender"}
)
