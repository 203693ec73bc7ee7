"""Instants as triage writes and reads them: ISO 8601 in UTC with a `Z`.

One place for the format ("2026-03-10T14:30:00Z"), so the store, the outbox, the lock
file and the command line agree, and an instant written by one reads back as the same
aware UTC datetime in another. Pure (no clock): callers pass `datetime.now(UTC)`
themselves, so the core may use it too.
"""

from __future__ import annotations

from datetime import UTC, datetime

from triage.errors import InstantError

__all__ = ["InstantError", "iso", "iso_seconds", "parse", "stored", "utc"]

EXAMPLE = "2026-03-10T09:30:00Z"


def utc(value: datetime) -> datetime:
    """The same instant in UTC (an aware datetime stays the instant it was)."""
    return value.astimezone(UTC)


def iso(value: datetime) -> str:
    """UTC with `Z`, fractions of a second kept when there are any: how rows store instants."""
    return _zulu(utc(value).isoformat())


def iso_seconds(value: datetime) -> str:
    """UTC with `Z`, in whole seconds: for what people read (lock files, health rows)."""
    return _zulu(utc(value).replace(microsecond=0).isoformat())


def parse(text: str) -> datetime:
    """Someone's ISO 8601 instant, which must name its zone (`Z` or an offset) -> aware UTC.

    A time without a zone is refused rather than guessed: the machine's zone, the
    customer's and UTC give three different instants.
    """
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InstantError(text, f"{text!r} is not ISO 8601", f"e.g. {EXAMPLE}") from None
    if parsed.tzinfo is None:
        raise InstantError(
            text, f"{text!r} has no time zone", f"give one, e.g. {EXAMPLE} or +01:00"
        )
    return utc(parsed)


def stored(text: str) -> datetime:
    """An instant triage wrote (`Z` or an offset) -> aware UTC datetime.

    One without a zone was never written by triage (a row edited by hand): it is read as
    UTC rather than refused. Raises ValueError when the text is no instant at all.
    """
    parsed = datetime.fromisoformat(text)
    return utc(parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC))


def _zulu(text: str) -> str:
    return text[:-6] + "Z" if text.endswith("+00:00") else text
