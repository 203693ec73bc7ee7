"""What the author wrote, as a hash: how a message is recognised when it comes again.

Stored with each message beside its Message-ID: a re-fetch or a second delivery route
agrees with the stored one and is a duplicate, while another message that reuses the
Message-ID differs and is kept (`triage.engine.record`). Computed on the raw bytes,
beside the parse.
"""

from __future__ import annotations

import hashlib

from triage.core.limits import BARE_CR, header_end


def fingerprint(raw: bytes, sender: str, subject: str) -> str:
    """A hash of author, subject and body bytes, blind to transport and date headers.

    Two copies of one message (a re-fetch, a second delivery route, a relay or a
    client that rewrote Date) agree; two different messages that reuse a
    Message-ID (some clients and tests do) differ in what they say.
    """
    return fingerprints(raw, sender, subject, "")["fingerprint"]


def fingerprints(raw: bytes, sender: str, subject: str, date: str) -> dict[str, str]:
    """`fingerprint`, and the one releases before it stored (the Date header included).

    The old one is kept beside the new so that a message stored by an earlier
    release and fetched again after an upgrade is still known as a duplicate.
    """
    end = header_end(raw)
    gap = 2 if raw.startswith(b"\n\n", end) else 4
    body = raw[end + gap :] if end < len(raw) else b""
    # CRLF as LF. With no bare CR that is every CR gone, which `translate` does in a third
    # of the time `replace` takes over a message's thousands of line ends.
    body = (
        body.translate(None, b"\r")
        if BARE_CR.search(body) is None
        else body.replace(b"\r\n", b"\n")
    )
    h = hashlib.sha256()
    for part in (sender.lower(), subject):
        h.update(part.encode("utf-8", "surrogateescape") + b"\0")
    old = h.copy()
    old.update(date.strip().encode("utf-8", "surrogateescape") + b"\0")
    h.update(body)
    old.update(body)
    return {"fingerprint": h.hexdigest()[:24], "old_fingerprint": old.hexdigest()[:24]}
