"""What a bounce says about the message it returns: its Message-ID, recipient and status.

Read from the raw bytes, so it works for RFC 3464 reports (message/delivery-status
with the returned message or its headers attached) and for the plain-text
bounces many MTAs still send, which quote the original headers in the body.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from triage.core.limits import split_header_block
from triage.core.values import by_position

_SCAN = 512 * 1024  # the returned headers are near the top; never scan a whole attachment
MAX_RECIPIENTS = 20
_MESSAGE_ID = re.compile(
    rb"^[ \t>]*Message-ID:[ \t]*\r?\n?[ \t]*(<[^<>\s]{3,250}>)", re.IGNORECASE | re.MULTILINE
)
_STATUS = re.compile(rb"^Status:[ \t]*([245]\.\d{1,3}\.\d{1,3})", re.IGNORECASE | re.MULTILINE)
_RECIPIENT = re.compile(
    rb"^(?:Final|Original)-Recipient:[ \t]*(?:rfc822|utf-8)?;?[ \t]*<?([^\s<>;]+@[^\s<>;]+)>?",
    re.IGNORECASE | re.MULTILINE,
)
_ACTION = re.compile(rb"^Action:[ \t]*([a-z]+)", re.IGNORECASE | re.MULTILINE)
_DIAGNOSTIC = re.compile(rb"^Diagnostic-Code:[ \t]*([^\r\n]{1,300})", re.IGNORECASE | re.MULTILINE)


@by_position
@dataclass(frozen=True, slots=True)
class Returned:
    message_ids: tuple[str, ...]
    recipient: str | None
    status: str | None  # RFC 3463 code, e.g. 5.1.1
    action: str | None  # failed | delayed | delivered | relayed | expanded
    diagnostic: str | None
    recipients: tuple[str, ...] = ()  # every Final- and Original-Recipient named, lowercase

    @property
    def permanent(self) -> bool:
        """A hard failure: status 5.x.x, or action failed with no status at all."""
        if self.status:
            return self.status.startswith("5")
        return self.action == "failed"


def returned(raw: bytes) -> Returned:
    """The Message-IDs and delivery facts a bounce carries in its body (not its own header)."""
    head = split_header_block(raw)
    body = raw[len(head) : len(head) + _SCAN]
    ids = tuple(dict.fromkeys(m.decode("ascii", "replace") for m in _MESSAGE_ID.findall(body)))
    named = tuple(
        dict.fromkeys(
            m.group(1).decode("utf-8", "replace").strip().lower()
            for m in itertools.islice(_RECIPIENT.finditer(body), MAX_RECIPIENTS)
        )
    )
    return Returned(
        ids,
        named[0] if named else None,
        _first(_STATUS, body),
        _first(_ACTION, body, lower=True),
        _first(_DIAGNOSTIC, body),
        named,
    )


def _first(pattern: re.Pattern[bytes], data: bytes, lower: bool = False) -> str | None:
    found = pattern.search(data)
    if not found:
        return None
    text = found.group(1).decode("utf-8", "replace").strip()
    return text.lower() if lower else text
