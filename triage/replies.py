"""Acknowledgements: whether one may be sent, and what it says.

The loop guard is deliberately conservative: a missing acknowledgement costs
a customer a little reassurance; a loop with another robot costs a mailbox.
"""

from __future__ import annotations

import re
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

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


def render_ack(
    email: Email,
    number: str,
    priority: str | None,
    due: datetime | None,
    config: Config,
    now: datetime,
) -> EmailMessage:
    """The acknowledgement for a new ticket, loop-proof by its headers."""
    msg = EmailMessage()
    domain = sorted(config.own_domains)[0]
    msg["From"] = config.support_address
    msg["To"] = reply_address(email)
    msg["Subject"] = ack_subject(email.subject, number, config.ticket_prefix)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(idstring=number, domain=domain)
    if email.message_id:
        msg["In-Reply-To"] = email.message_id
        msg["References"] = " ".join((*email.references[-10:], email.message_id))
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["Precedence"] = "auto_reply"
    when = (
        f"We will answer by {due.strftime('%Y-%m-%d %H:%M %Z')}."
        if due
        else "This request has no committed response time."
    )
    msg.set_content(
        f"Hello,\n\nwe have received your message and opened ticket {number}"
        f" (priority {priority or 'normal'}).\n{when}\n\n"
        f"To add to this ticket, reply to this message and keep [#{number}] in the subject.\n\n"
        "This is an automatic acknowledgement.\n"
    )
    return msg
