"""What an access token says of its own expiry, and an IMAP INTERNALDATE read as an instant."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from triage.sources.imap.reading import internaldate
from triage.sources.token_expiry import jwt_expiry


def jwt(payload: object) -> str:
    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(payload)}.c2ln"


def test_a_jwt_says_when_it_expires():
    assert jwt_expiry(jwt({"exp": 1796400000})) == datetime.fromtimestamp(1796400000, UTC)


@pytest.mark.parametrize(
    "token",
    [
        "ya29.a0AfH6SMB-opaque",  # Google's: says nothing
        "at-random",
        jwt({"sub": "support"}),  # no exp
        jwt({"exp": "tomorrow"}),
        jwt({"exp": True}),
        jwt([1, 2]),
        "a.!!!.c",
        "",
    ],
)
def test_anything_else_is_unknown_never_an_error(token: str):
    assert jwt_expiry(token) is None


@pytest.mark.parametrize(
    ("text", "when"),
    [
        (
            b"17-Jul-1996 02:44:25 -0700",
            datetime(1996, 7, 17, 2, 44, 25, tzinfo=timezone(-timedelta(hours=7))),
        ),
        (b" 3-Dec-2026 17:40:00 +0000", datetime(2026, 12, 3, 17, 40, tzinfo=UTC)),
    ],
)
def test_internaldate(text: bytes, when: datetime):
    assert internaldate(text) == when


def test_an_internaldate_that_is_not_one_is_unknown():
    assert internaldate(b"yesterday") is None
