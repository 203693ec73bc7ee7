"""The bodies of a message: text, HTML, attachments and the HTML's link and image counts.

mail-parser walks the MIME tree (bodies, attachments, charsets) once the headers
and outline are read (`triage.core.message.read`), and only for the mail that needs
them. Where it raises, the stdlib tree is read instead; attached messages are
flattened in linear time; winmail.dat is opened (`triage.core.tnef`).
"""

from __future__ import annotations

import base64
import binascii
import email.message
import hashlib
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import mailparser

from triage.core import charsets, tnef
from triage.core.headertext import clean
from triage.core.htmltext import html_to_text
from triage.core.limits import MAX_BODY_CHARS, MessageError
from triage.core.values import by_position, replaced

if TYPE_CHECKING:
    from triage.core.message import Email

# mail-parser logs every unhandled part type at WARNING; those are facts about
# the sender's message, not problems of ours.
logging.getLogger("mailparser").setLevel(logging.ERROR)

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


_LAST_LETTER = re.compile(rb"[A-Za-z0-9+/](?=[^A-Za-z0-9+/]*\Z)")


def _base64_payload(part: email.message.Message) -> str | bytes:
    """A base64 part's file, for mail-parser: its base64 text as it came when that is ASCII
    (the usual case: `_attachment` decodes it, once), else the file decoded from the bytes.

    mail-parser took the payload read through the charset the part declares: 8-bit
    bytes among the lines became U+FFFD, which then failed to decode as base64, and
    the text was stored instead (three bytes for each 8-bit byte: the fuzz run found
    an attachment 2.3 times its message); a declared UTF-16 read the base64 as other
    text. mail-parser encodes bytes returned here as base64 again.
    """
    payload = part._payload  # noqa: SLF001 - get_payload() would apply the declared charset
    if not isinstance(payload, str):
        return b""
    if payload.isascii():
        return payload
    return _from_base64(payload.encode("utf-8", "surrogateescape"))  # 8-bit bytes as they came


def _from_base64(data: bytes) -> bytes:
    """`data` decoded as the stdlib decodes base64, never larger: bytes that are not base64
    are skipped and missing padding completed; a last letter alone (no whole byte) is
    dropped; what cannot be decoded even so is kept as it came."""
    try:
        return base64.b64decode(data + b"==")  # extra padding is ignored
    except binascii.Error:
        pass
    try:  # only then the scan for a last letter alone: it costs more than the decoding
        return base64.b64decode(_LAST_LETTER.sub(b"", data, count=1) + b"==")
    except binascii.Error:
        return data  # what the stdlib keeps when it cannot decode either


# mail-parser's walk calls these module globals, for every attached message and every
# base64 attachment; nothing else in the process uses mail-parser's walk.
_as_string_safe = mailparser.core.as_string_safe
mailparser.core.as_string_safe = _flatten
mailparser.core.raw_payload = _base64_payload


class _Lean(mailparser.MailParser):
    """mail-parser's MIME walk (bodies, attachments, charsets) without the rest.

    Its header views (every address header, every Received line, dates, and two
    JSON-ready copies of the message) cost more than the walk itself and we read
    those headers ourselves. If a mail-parser release renames what is reset here,
    the walk raises and `with_bodies` falls back to the stdlib reading, recorded as a
    defect (tests/test_message.py watches for that).
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


# The part headers mail-parser reads a part's name, type and encoding from (its
# `mime_header_view`); when they are ASCII, that view says what the part itself says.
_MIME_HEADERS = frozenset(
    {"content-type", "content-disposition", "content-id", "content-transfer-encoding"}
)


def _one_text(msg: email.message.Message) -> tuple[list[str], list[str], list] | None:
    """What mail-parser's walk gives for a message of one text/plain or text/html part, with
    no name and no attachment disposition: that one text, decoded by mail-parser's own code.
    None for anything else (the walk runs). The walk's views of every header cost about
    30 µs a message more (tests/test_message.py holds the two equal on all mail we have).
    """
    if msg.is_multipart() or msg.defects:
        return None
    ctype = msg.get_content_type()
    if ctype not in ("text/plain", "text/html"):
        return None
    for name, value in msg.raw_items():
        if name.lower() in _MIME_HEADERS and not (isinstance(value, str) and value.isascii()):
            return None
    if msg.get_filename() or msg.get_content_disposition() == "attachment":
        return None
    decoder = _Lean.__new__(_Lean)  # its state for a charset that fails, then dropped
    decoder._reset()  # noqa: SLF001
    text = decoder._decode_body_payload(msg, msg.get_content_charset("utf-8"), 0)  # noqa: SLF001
    if not text:
        return [], [], []
    return ([text], [], []) if ctype == "text/plain" else ([], [text], [])


def _attachment(item: dict) -> Attachment:
    payload = item.get("payload") or ""
    # base64 as it came (`_base64_payload`) or as mail-parser wrote it; an attached message
    # keeps its 8-bit bytes (see `_flatten`)
    data = _bytes(str(payload))
    if item.get("binary"):
        data = _from_base64(data)
    return Attachment(
        filename=clean(str(item.get("filename") or "attachment")),
        content_type=clean(str(item.get("mail_content_type") or "application/octet-stream")),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
    )


def _bytes(text: str) -> bytes:
    """Text that came as bytes (8-bit ones kept as surrogates) as those bytes again."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _file(filename: str, content_type: str, data: bytes) -> Attachment:
    """An attachment unpacked from a container (winmail.dat)."""
    return Attachment(
        clean(filename), content_type, len(data), hashlib.sha256(data).hexdigest(), data
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
                    clean(str(name or "attachment")),
                    clean(ctype),
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


def with_bodies(
    msg: email.message.Message,
    head: Email,
    unsettled: list[tuple[email.message.Message, str | None]] = (),  # type: ignore[assignment]
) -> Email:
    """`head` with body, attachments, defects and markup counts filled in from `msg`."""
    defects: list[str] = list(charsets.settle(unsettled))
    try:
        texts = _one_text(msg)
        if texts is None:
            parsed = _Lean(msg)
            texts = (parsed.text_plain, parsed.text_html, parsed.attachments)
        plain = [_unescaped(t) for t in texts[0]]
        html = [_unescaped(t) for t in texts[1]]
        files = [_attachment(a) for a in texts[2]]
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
    body = clean(body)
    links, tracking, images = _markup_counts(html)
    return replaced(
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
