"""Mail to the operator: a mailbox is failing, or it has recovered. Pure: the daemon queues it.

Each carries Date and Message-ID (large providers refuse mail without a Message-ID), is marked
Auto-Submitted, and is sent by the outbox before any acknowledgement.
"""

from __future__ import annotations

import quopri
from email.header import Header
from email.utils import format_datetime

from triage.config import Config
from triage.config.endpoints import Mailbox
from triage.core.replies import Ack, clean


def _subject(text: str) -> bytes:
    text = clean(text)
    if text.isascii():
        return f"Subject: {text}\r\n".encode("ascii")
    return f"Subject: {Header(text, 'utf-8', header_name='Subject').encode()}\r\n".encode("ascii")


def render(config: Config, to: str, subject: str, body: str, now, token: str) -> Ack:
    """One alert as bytes; `token` (random, from the caller) makes its Message-ID unique."""
    domain = sorted(config.own_domains)[0]
    message_id = f"<alert.{token}@{domain}>"
    head = b"".join(
        [
            f"From: {clean(config.support_address)}\r\n".encode(),
            f"To: {clean(to)}\r\n".encode(),
            _subject(subject),
            f"Date: {format_datetime(now)}\r\n".encode("ascii"),  # set again when sent
            f"Message-ID: {message_id}\r\n".encode("ascii"),
            b"Auto-Submitted: auto-generated\r\n",
            b"MIME-Version: 1.0\r\n",
            b'Content-Type: text/plain; charset="utf-8"\r\n',
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
        ]
    )
    text = body.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
    return Ack(to, clean(subject), message_id, head + quopri.encodestring(text))


def mailbox_failing(
    config: Config, mb: Mailbox, kind: str, message: str, now, token: str
) -> Ack | None:
    """The alert for a mailbox declared failing; None when no operator is configured."""
    operator = config.daemon.operator
    if not operator:
        return None
    body = (
        f"triage cannot read mailbox {mb.name} ({mb.username} at {mb.host}).\n\n{message}\n\n"
        "Fix the cause; triage keeps retrying with backoff, and mails again when it recovers.\n"
    )
    return render(
        config, operator, f"triage: mailbox {mb.name} is failing ({kind})", body, now, token
    )


def mailbox_recovered(
    config: Config, mb: Mailbox, since: str | None, failures: int, now, token: str
) -> Ack | None:
    """The all-clear for a mailbox that was failing; None when no operator is configured."""
    operator = config.daemon.operator
    if not operator:
        return None
    spell = f" (failing since {since}, {failures} failed attempts)" if since else ""
    body = (
        f"triage reads mailbox {mb.name} ({mb.username} at {mb.host}) again{spell}.\n\n"
        "Mail that arrived meanwhile is being processed now; nothing needs to be done.\n"
    )
    return render(config, operator, f"triage: mailbox {mb.name} has recovered", body, now, token)
