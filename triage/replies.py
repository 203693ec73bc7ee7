"""Acknowledgements: whether one may be sent, and what it says.

The loop guard is deliberately conservative: a missing acknowledgement costs
a customer a little reassurance; a loop with another robot costs a mailbox.
"""

from __future__ import annotations

import quopri
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime

from triage.config import Config
from triage.conversation import token_pattern
from triage.message import Email

_CRLF = re.compile(r"[\r\n\x00]+")
_PREFIXES = re.compile(r"^\s*((re|fwd?|aw|sv|vs|antw|wg)\s*:\s*)+", re.IGNORECASE)


def reply_guard(email: Email, config: Config) -> str | None:
    """Why no acknowledgement may go to this message's author, or None when one may."""
    target = reply_address(email)
    if not target or "@" not in target:
        return "no usable reply address"
    local, _, domain = target.partition("@")
    if domain in config.own_domains or target == config.support_address:
        return f"{target} is one of our own addresses"
    squashed = local.replace("-", "").replace("_", "").replace(".", "")
    for word in config.never_reply:
        if squashed.startswith(word.replace("-", "").replace("_", "")):
            return f"{target} is on the never-reply list ({word})"
    if email.first("return-path").strip() == "<>":
        return "empty Return-Path: a notification, never answered"
    suppress = email.first("x-auto-response-suppress").lower()
    if any(flag in suppress for flag in ("all", "autoreply", "oof")):
        return f"sender asked for no automatic replies (X-Auto-Response-Suppress: {suppress})"
    return None


def reply_address(email: Email) -> str:
    return email.reply_to[0] if email.reply_to else email.from_addr


def clean(text: str) -> str:
    """One line, no header injection."""
    return " ".join(_CRLF.sub(" ", text).split())


def ack_subject(subject: str, number: str, prefix: str) -> str:
    """`[#T-000123] original subject`, without Re:/token pile-ups."""
    bare = token_pattern(prefix).sub("", clean(subject))
    bare = _PREFIXES.sub("", bare).strip() or "(no subject)"
    return f"[#{number}] {bare}"


@dataclass(frozen=True, slots=True)
class Ack:
    """A rendered acknowledgement: the envelope facts and the exact bytes to send."""

    to: str
    subject: str
    message_id: str
    raw: bytes


def _header(name: str, value: str) -> bytes:
    value = clean(value)
    if value.isascii() and len(value) < 900:
        return f"{name}: {value}\r\n".encode("ascii")
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n".encode("ascii")


def render_ack(
    email: Email,
    number: str,
    priority: str | None,
    due: datetime | None,
    config: Config,
    now: datetime,
) -> Ack:
    """The acknowledgement for a new ticket opened from `email`."""
    refs = (*email.references[-10:], email.message_id) if email.message_id else ()
    return render(
        reply_address(email),
        email.subject,
        email.message_id,
        refs,
        number,
        priority,
        due,
        config,
        now,
    )


def render(
    to: str,
    original_subject: str,
    in_reply_to: str | None,
    references: tuple[str, ...],
    number: str,
    priority: str | None,
    due: datetime | None,
    config: Config,
    now: datetime,
) -> Ack:
    """An acknowledgement, loop-proof by its headers.

    Written by hand rather than with EmailMessage: this runs once per ticket on
    the path that commits, and the stdlib's policy machinery costs a millisecond.
    """
    domain = sorted(config.own_domains)[0]
    subject = ack_subject(original_subject, number, config.ticket_prefix)
    message_id = f"<{number}.{secrets.token_hex(8)}@{domain}>"
    when = (
        f"We will answer by {due.strftime('%Y-%m-%d %H:%M %Z')}."
        if due
        else "This request has no committed response time."
    )
    body = (
        f"Hello,\n\nwe have received your message and opened ticket {number}"
        f" (priority {priority or 'normal'}).\n{when}\n\n"
        f"To add to this ticket, reply to this message and keep [#{number}] in the subject.\n\n"
        "This is an automatic acknowledgement.\n"
    )
    head = [
        _header("From", config.support_address),
        _header("To", to),
        _header("Subject", subject),
        _header("Date", format_datetime(now)),
        _header("Message-ID", message_id),
    ]
    if in_reply_to:
        head.append(_header("In-Reply-To", in_reply_to))
    if references:
        head.append(_header("References", " ".join(references)))
    head += [
        b"Auto-Submitted: auto-replied\r\n",
        b"X-Auto-Response-Suppress: All\r\n",
        b"Precedence: auto_reply\r\n",
        b"MIME-Version: 1.0\r\n",
        b'Content-Type: text/plain; charset="utf-8"\r\n',
        b"Content-Transfer-Encoding: quoted-printable\r\n",
    ]
    payload = quopri.encodestring(body.replace("\n", "\r\n").encode("utf-8"))
    return Ack(to, subject, message_id, b"".join(head) + b"\r\n" + payload)
