"""Who really wrote a hand-forwarded message.

When a support address is forwarded server-side the author stays in From and
nothing here applies. When an agent forwards a customer's mail by hand, the
customer is the requester: we read the author from the attached message
(message/rfc822) or from the "From:" line of an inline forward block.
"""

from __future__ import annotations

import re
from email.utils import getaddresses

from triage.core.message import Email, mailbox
from triage.core.subjects import is_forward

# Lines that open an inline forward in the common clients (Gmail, Apple Mail,
# Outlook, Thunderbird, and their German, French and Spanish forms).
# Leading whitespace is [^\S\n]*, never \s*: a \s* that crosses lines makes every
# search over a body of blank lines quadratic (cubic for _FROM), a stall any
# sender can trigger with a spoofed From in our own domain.
_MARKER = re.compile(
    r"^[^\S\n]*(?:-{2,}\s*(?:forwarded message|original message|weitergeleitete nachricht|"
    r"message transféré|mensaje reenviado|ursprüngliche nachricht|message d'origine)\s*-{2,}"
    r"|begin forwarded message:|_{10,}|anfang der weitergeleiteten nachricht:)\s*$",
    re.IGNORECASE | re.MULTILINE,
)
# The From line of a forwarded block, as Outlook and the others write it in English,
# German, French/Spanish/Portuguese, Dutch, Italian, Polish/Czech, Swedish, Danish/Norwegian,
# Turkish, Japanese, Chinese (simplified, traditional) and Korean.
_FROM = re.compile(
    r"^[^\S\n]*(?:[*>]+[^\S\n]*)?(?:from|von|de|van|da|od|från|fra|kimden|差出人|发件人|寄件者|보낸 사람)"
    r"[^\S\n]*[:：][^\S\n]*(?:\*+[^\S\n]*)?(.+)$",
    re.IGNORECASE | re.MULTILINE,
)
_MAILTO = re.compile(r"\[mailto:([^\[\]]+)\]")
MAX_FROM_LINE = 1000  # the stdlib address parser is slow; a real From line is short


def original_author(email: Email) -> tuple[str, str] | None:
    """(name, address) of the forwarded message's author, or None when it is not a forward."""
    if email.attached_from:  # a header: its address is read as written, only the name decoded
        name, address = mailbox([email.attached_from[:MAX_FROM_LINE]])
        if "@" in address:
            return name, address
    if not (is_forward(email.subject) or _MARKER.search(email.body)):
        return None
    marker = _MARKER.search(email.body)
    start = marker.end() if marker else 0
    line = _FROM.search(email.body, start)
    if line is None or line.start() - start > 400:  # the From: line opens the forwarded block
        return None
    return _first_address(line.group(1))


def _first_address(text: str) -> tuple[str, str] | None:
    # Outlook writes "Name [mailto:addr]"; make it parseable.
    text = _MAILTO.sub(r"<\1>", text[:MAX_FROM_LINE])
    for name, addr in getaddresses([text]):
        addr = addr.strip().lower()
        if "@" in addr:
            return name.strip().strip('"'), addr
    return None
