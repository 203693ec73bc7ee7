"""Message keys: a re-fetch is a no-op, and a reused Message-ID loses nothing.

A stored key is a duplicate only when the content agrees: a different message
that reuses a Message-ID is kept under the ID plus its fingerprint.
"""

from __future__ import annotations

from collections.abc import Mapping

from triage.core.message import Email


def resolve_key(email: Email, stored: Mapping[str, str]) -> tuple[str, bool, str | None]:
    """(key, is_duplicate, note) for `email` against `stored` (key -> fingerprint, '' if none).

    A re-fetch or second delivery of one message is a duplicate; a different message
    that reuses a Message-ID is kept under the ID plus its fingerprint. What an
    earlier release stored under its fingerprint (Date included) still counts.
    """
    key = email.key
    first = stored.get(key)
    if first is None:
        return key, False, None
    ours = {email.fingerprint, email.old_fingerprint} - {""}
    if first == "" or first in ours or not email.message_id:
        return key, True, None
    for mark in (email.fingerprint, email.old_fingerprint):
        if mark and f"{key}#{mark}" in stored:
            return f"{key}#{mark}", True, None
    return f"{key}#{email.fingerprint}", False, f"Message-ID {key} reused by a different message"
