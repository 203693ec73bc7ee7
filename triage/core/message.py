"""Bytes -> a frozen `Email`: bounded, defensive, never trusting the sender.

`read` checks the raw bytes first (`triage.core.limits`), so hostile input is refused
before it costs anything, then reads the headers and the MIME outline; the bodies
(`triage.core.bodies`) are read only when asked for. Addresses are read from the raw
headers (`triage.core.addresses`): RFC 2047 decodes display names only
(`triage.core.headertext`).
"""

from __future__ import annotations

import email
import email.message
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from triage.core import charsets
from triage.core.addresses import addresses, first_mailbox
from triage.core.bodies import Attachment, with_bodies
from triage.core.fingerprints import fingerprints
from triage.core.headertext import clean, decode, header_charset, raw_text, undo_surrogates
from triage.core.limits import Limits, MessageError, parse, precheck
from triage.core.values import by_position

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
    fingerprint: str = (
        ""  # what the author wrote, not how it travelled (`triage.core.fingerprints`)
    )
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
        ctype = clean(part.get_content_type())
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
                report_types.append(clean(report.strip().lower()))
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


def _ids(values: tuple[str, ...]) -> tuple[str, ...]:
    seen: list[str] = []
    for value in values:
        for found in _MSGID.findall(undo_surrogates(value, None)):
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
            self._full = with_bodies(self._msg, self.head, self._unsettled)
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
        msg = parse(raw, limits.max_parts)
    except RecursionError:
        raise MessageError("too_deep", "MIME nesting too deep to parse") from None
    grouped: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        grouped.setdefault(name.lower(), []).append(value)
    if not grouped.keys() & _EMAIL_HEADERS:
        raise MessageError("not_email", "no From, To, Subject, Date or Message-ID header")
    part_types, report_types, hint, attached_from, unsettled = _walk(msg, limits)
    if hint is None or hint in charsets.ASCII_NAMES:
        hint = header_charset(grouped) or hint

    def values(name: str) -> list[str]:
        return [decode(v, hint) for v in grouped.get(name, ())]

    def verbatim(name: str) -> list[str]:
        return [raw_text(v, hint) for v in grouped.get(name, ())]

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
        attached_from=raw_text(attached_from, hint) if attached_from else "",
        **fingerprints(raw, from_addr, subject[0] if subject else "", date[0] if date else ""),
        header_names=frozenset(grouped),
    )
    return Reading(msg, head, unsettled)


def mailbox(values: list[str], hint: str | None = None) -> tuple[str, str]:
    """(display name, address) of the first mailbox in raw header values (From, an attached From).

    The address is parsed from the text as it came; only the name is RFC 2047 decoded,
    so an encoded word can never become (or add) an address.
    """
    name, address = first_mailbox(values)
    if "=?" in name:
        name = decode(name, hint)
    return name.strip('"').strip(), address


_EMAIL_HEADERS = frozenset(
    {"from", "to", "subject", "date", "message-id", "received", "return-path", "sender"}
)
