"""Acknowledgements: whether one may be sent, and what it says.

The loop guard is deliberately conservative: a missing acknowledgement costs
a customer a little reassurance; a loop with another robot costs a mailbox.
"""

from __future__ import annotations

import quopri
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.header import Header
from email.utils import format_datetime, formataddr
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from triage.config import Config
from triage.core import lifecycle
from triage.core.addresses import sendable
from triage.core.conversation import token_pattern
from triage.core.message import Email
from triage.core.subjects import bare as bare_subject
from triage.core.templates import Templates

_CRLF = re.compile(r"[\r\n\x00]+")


_BULK = ("bulk", "junk", "list", "auto_reply")

# How much of the original subject an acknowledgement repeats (Subject header and $subject).
SUBJECT_MAX = 200
# How much of the sender's display name it repeats ($requester_name): a name is the sender's
# to choose, a 200 kB one made a 417 kB acknowledgement.
NAME_MAX = 100


def reply_guard(email: Email, config: Config) -> str | None:
    """Why no acknowledgement may go to this message's author, or None when one may.

    Checks what the message itself says; the history (earlier bounces, how many
    acknowledgements this address already got) is checked by `history_guard`.
    """
    target = reply_address(email)
    if not sendable(target):
        return "no usable reply address"
    local, _, domain = target.partition("@")
    if domain in config.own_domains or target == config.support_address:
        return f"{target} is one of our own addresses"
    squashed = _squash(local)
    for word in config.never_reply:
        if squashed.startswith(_squash(word)):
            return f"{target} is on the never-reply list ({word})"
    if email.first("return-path").strip() == "<>":
        return "empty Return-Path: a notification, never answered"
    auto = email.first("auto-submitted").split(";")[0].strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    if email.first("precedence").split(";")[0].strip().lower() in _BULK:
        return f"Precedence: {email.first('precedence')}"
    for header in ("list-id", "list-unsubscribe", "x-autoreply", "x-autorespond", "x-loop"):
        if email.first(header):
            return f"{header} present: list, bulk or automatic mail"
    suppress = email.first("x-auto-response-suppress").lower()
    if any(flag in suppress for flag in ("all", "autoreply", "oof")):
        return f"sender asked for no automatic replies (X-Auto-Response-Suppress: {suppress})"
    return None


def history_guard(address: str, history, config: Config, now: datetime) -> str | None:
    """Why the history forbids another acknowledgement to `address`, or None.

    `history` answers `bounced_since(address, since)` and `acks_since(address, since)`.
    """
    since = now - timedelta(days=config.bounce_days)
    if history.bounced_since(address, since):
        return f"an earlier acknowledgement to {address} bounced permanently (within {config.bounce_days} days)"
    sent = history.acks_since(address, now - timedelta(hours=24))
    if sent >= config.max_acks_per_day:
        return f"{address} already got {sent} acknowledgements in the last 24 hours (limit {config.max_acks_per_day})"
    return None


def _squash(text: str) -> str:
    return text.lower().replace("-", "").replace("_", "").replace(".", "")


def reply_address(email: Email) -> str:
    return email.reply_to[0] if email.reply_to else email.from_addr


def clean(text: str) -> str:
    """One line, no header injection."""
    return " ".join(_CRLF.sub(" ", text).split())


def capped(text: str, limit: int) -> str:
    """`text` as one clean line of at most `limit` characters, ending with "…" when cut.

    For what the sender chooses (subject, display name): a megabyte of it would otherwise
    be folded into RFC 2047 encoded words (about a second of CPU per acknowledgement),
    copied into the body and kept in the outbox. Cut at a character, never inside an
    encoded byte sequence.
    """
    line = clean(text)
    if len(line) <= limit:
        return line
    return line[: limit - 1].rstrip() + "…"


def capped_subject(subject: str, limit: int = SUBJECT_MAX) -> str:
    """The subject as the acknowledgement repeats it (see `capped`)."""
    return capped(subject, limit)


def ack_subject(subject: str, number: str, prefix: str) -> str:
    """`[#T-000123] original subject`, without pile-ups of tokens or of prefixes in any language."""
    rest = bare_subject(token_pattern(prefix).sub("", clean(subject))) or "(no subject)"
    return f"[#{number}] {rest}"


@dataclass(frozen=True, slots=True)
class Ack:
    """A rendered acknowledgement: the envelope facts and the exact bytes to send."""

    to: str
    subject: str
    message_id: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class AckIds:
    """The random parts of one acknowledgement, made by the engine: the core has no randomness.

    `message` makes its Message-ID unique (`<T-000123.{message}@domain>`), `boundary` its
    multipart boundary; both are hex text.
    """

    message: str
    boundary: str


@dataclass(frozen=True, slots=True)
class AckFacts:
    """Everything an acknowledgement says, gathered before rendering."""

    to: str
    original_subject: str
    in_reply_to: str | None
    references: tuple[str, ...]
    number: str
    priority: str | None
    level: int | None
    due: datetime | None
    timezone: str
    requester_name: str
    kind: str = "ack"  # ack | held
    stranger: bool = False  # unknown sender: the level's name only, no claim about their systems


def facts_for(email: Email, d, config: Config) -> AckFacts:
    """The facts of the acknowledgement for decision `d` about `email`."""
    refs = (*email.references[-10:], email.message_id) if email.message_id else ()
    return AckFacts(
        reply_address(email),
        email.subject,
        email.message_id,
        refs,
        d.ticket or "",
        d.priority,
        d.level,
        d.due,
        d.timezone or config.timezone,
        d.requester_name or email.from_name,
        "held" if d.status == lifecycle.HELD else "ack",
        d.stranger,
    )


def due_text(due: datetime | None, tz: str) -> str:
    """The deadline in the requester's time zone, as a person reads it."""
    if due is None:
        return "no committed response time"
    try:
        local = due.astimezone(ZoneInfo(tz))
    except (ZoneInfoNotFoundError, ValueError):
        local = due
    return local.strftime("%A %-d %B %Y, %H:%M %Z")


def _header(name: str, value: str) -> bytes:
    value = clean(value)
    if value.isascii() and len(value) < 900:
        return f"{name}: {value}\r\n".encode("ascii")
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n".encode("ascii")


def _address_header(name: str, address: str) -> bytes:
    """An address as it is: never an encoded word (RFC 2047 §5), UTF-8 when it is not ASCII
    (RFC 6532; the relay then needs SMTPUTF8, which the outbox checks)."""
    return f"{name}: {clean(address)}\r\n".encode()


def _from_header(name: str, address: str) -> bytes:
    """`From: Display Name <address>`: an ASCII name quoted where RFC 5322 needs it (by
    formataddr, given a stand-in address because the real one may be UTF-8), a non-ASCII
    name as RFC 2047 encoded words folded at 78; no name: the address alone."""
    name = clean(name)
    if not name:
        return _address_header("From", address)
    if name.isascii():
        phrase = formataddr((name, "a@b")).removesuffix(" <a@b>")
    else:
        phrase = Header(name, "utf-8", header_name="From").encode(linesep="\r\n")
    return f"From: {phrase} <{clean(address)}>\r\n".encode()


_ID_MAX = 900  # octets: a longer msg-id cannot stay on one line of at most 998
_FOLD_AT = 78


def _ids_header(name: str, ids: tuple[str, ...] | list[str]) -> bytes:
    """Message-IDs, folded between ids and never encoded (an encoded word in a msg-id breaks
    threading at the other end); an id that is empty, holds a space or cannot fit a line is
    left out. No usable id: no header."""
    kept = [m for m in (clean(i) for i in ids) if m and " " not in m and len(m.encode()) <= _ID_MAX]
    if not kept:
        return b""
    lines: list[str] = []
    line = f"{name}:"
    for mid in kept:
        if len(line.encode()) + 1 + len(mid.encode()) > _FOLD_AT and line != f"{name}:":
            lines.append(line)
            line = ""
        line += " " + mid
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode()


def _qp(text: str) -> bytes:
    return quopri.encodestring(text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8"))


def render(
    facts: AckFacts, templates: Templates, config: Config, now: datetime, ids: AckIds
) -> Ack:
    """The acknowledgement as bytes, loop-proof by its headers; `ids` from the caller.

    Written by hand rather than with EmailMessage: this runs once per ticket on
    the path that commits, and the stdlib's policy machinery costs a millisecond.
    """
    domain = sorted(config.own_domains)[0]
    original = capped_subject(facts.original_subject)  # before any header folding
    subject = ack_subject(original, facts.number, config.ticket_prefix)
    message_id = f"<{facts.number}.{ids.message}@{domain}>"
    when = due_text(facts.due, facts.timezone)
    values = {
        "ticket": facts.number,
        "subject": original or "(no subject)",
        "priority": facts.priority or "normal",
        "meaning": (templates.plain_meanings if facts.stranger else templates.meanings).get(
            facts.level or 3, ""
        ),
        "due": when,
        "response": f"We will answer by {when}."
        if facts.due
        else "This request has no committed response time.",
        "requester_name": capped(facts.requester_name, NAME_MAX) or "there",
        "support_address": config.support_address,
        "sender_name": config.display_name,
        "signature": config.signature,
        "emergency_phone": config.emergency_phone,
        "emergency": f"In an emergency, call {config.emergency_phone}."
        if config.emergency_phone
        else "",
    }
    text, markup = templates.render(facts.kind, values)
    head = [
        _from_header(config.display_name, config.support_address),
        _address_header("To", facts.to),
        _header("Subject", subject),
        _header("Date", format_datetime(now)),  # the outbox sets it again when it is sent
        _ids_header("Message-ID", [message_id]),
    ]
    if facts.in_reply_to:
        head.append(_ids_header("In-Reply-To", [facts.in_reply_to]))
    if facts.references:
        head.append(_ids_header("References", facts.references))
    head += [
        b"Auto-Submitted: auto-replied\r\n",
        b"X-Auto-Response-Suppress: All\r\n",
        b"Precedence: auto_reply\r\n",
        b"MIME-Version: 1.0\r\n",
    ]
    part = (
        b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
        + _qp(text)
    )
    if markup is None:
        body = part
    else:
        boundary = f"=_triage_{ids.boundary}"
        body = (
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n--{boundary}\r\n'.encode()
            + part
            + f'\r\n--{boundary}\r\nContent-Type: text/html; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode()
            + _qp(markup)
            + f"\r\n--{boundary}--\r\n".encode()
        )
    return Ack(facts.to, subject, message_id, b"".join(head) + body)
