"""When an OAuth access token expires, where the token itself says so.

A JWT access token (Microsoft's, and most identity providers') carries its expiry in the
`exp` claim of its payload; an opaque one (Google's `ya29.` tokens) says nothing, and its
expiry stays unknown. Only read, never verified: the server that takes the token checks it;
this only tells an operator, through `triage_oauth_token_seconds_left`, how long it has.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime

MAX_PART = 64 * 1024  # a token header or payload longer than this is not read


def jwt_expiry(token: str) -> datetime | None:
    """The `exp` of a JWT, as an aware UTC datetime; None for anything else."""
    parts = token.strip().split(".")
    if len(parts) != 3 or len(parts[1]) > MAX_PART:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
        exp = claims["exp"]
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            return None
        return datetime.fromtimestamp(exp, UTC)
    except (UnicodeError, binascii.Error, ValueError, KeyError, TypeError, OverflowError, OSError):
        return None
