"""How policy files write time: targets ("4h", "3 business days"), weekly hours, zones.

Each parser takes the text as written and `where` (file and key) so that its
SlaError tells the operator what was wrong and what to write instead.
"""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from triage.core.sla.calendars import DAY_MIN, SlaError

_FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SPEC = re.compile(
    r"^(?P<days>[a-z][a-z ,\-]*?)\s+(?:(?P<all>all day)|(?P<s>\d\d?:\d\d)\s*[-–]\s*(?P<e>\d\d?:\d\d))$"
)


def zone_named(key: str, where: str) -> ZoneInfo:
    """ZoneInfo for an IANA name; SlaError (naming `where`) if unknown."""
    zone = _ZONES.get(key)
    if zone is None:
        try:
            zone = ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise SlaError(
                f"{where} {key!r} is not a known time zone; "
                'fix: use an IANA name such as "America/New_York", "Europe/Berlin" or "UTC"'
            ) from None
        _ZONES[key] = zone
    return zone


_ZONES: dict[str, ZoneInfo] = {}


HOURS, BUSINESS_DAYS, NONE = "hours", "business days", "none"
_US_HOUR = 3_600_000_000
_DURATION = re.compile(
    r"^(?:(?P<h>\d+)\s*(?:h|hrs?|hours?))?\s*(?:(?P<m>\d+)\s*(?:m|mins?|minutes?))?$"
)
_BDAYS = re.compile(r"^(?P<n>\d+)\s*(?:business\s+days?|bd)$")
_ACCEPTED_DURATIONS = (
    'write "30m", "4h", "1h30m", "3 business days", "0" (immediate) or "none" (no deadline)'
)


def parse_duration(text: object, where: str) -> tuple[str, int]:
    """Target text -> (kind, amount): µs of open time for HOURS, a count for BUSINESS_DAYS."""
    if not isinstance(text, str):
        raise SlaError(f"{where} must be a string; fix: {_ACCEPTED_DURATIONS}")
    s = " ".join(text.strip().lower().split())
    if s == "none":
        return NONE, 0
    if s in ("0", "immediate"):
        return HOURS, 0
    if m := _BDAYS.match(s):
        return BUSINESS_DAYS, int(m["n"])
    m = _DURATION.match(s)
    if m is None or not s or (m["h"] is None and m["m"] is None):
        raise SlaError(f"{where} {text!r} is not a duration; fix: {_ACCEPTED_DURATIONS}")
    return HOURS, int(m["h"] or 0) * _US_HOUR + int(m["m"] or 0) * 60_000_000


# --------------------------------------------------------------------------- weekly hours


def parse_open(spec: object, where: str) -> tuple[tuple[tuple[int, int], ...], ...]:
    """`open` value -> per weekday (Mon=0) a tuple of (start, end) minutes; end may pass 1440.

    Accepts "24x7" or a list like ["Mon-Fri 08:00-17:00", "Sat-Sun all day",
    "Sun-Fri 17:00-09:00"]; an end at or before the start crosses midnight.
    """
    accepted = (
        'fix: write "24x7" or a list of "<days> HH:MM-HH:MM" / "<days> all day", '
        'e.g. ["Mon-Fri 08:00-17:00", "Sun-Fri 17:00-09:00", "Sat-Sun all day"]'
    )
    if spec == "24x7":
        spec = ["Mon-Sun all day"]
    if not isinstance(spec, list) or not all(isinstance(s, str) for s in spec):
        raise SlaError(f"{where} must be a list of strings; {accepted}")
    week: list[list[tuple[int, int]]] = [[] for _ in range(7)]
    for text in spec:
        m = _SPEC.match(" ".join(text.lower().split()))
        if m is None:
            raise SlaError(f"{where} {text!r} is not an open interval; {accepted}")
        days = _parse_days(m["days"], text, where, accepted)
        if m["all"]:
            start, end = 0, DAY_MIN
        else:
            start, end = _minute(m["s"], text, where), _minute(m["e"], text, where)
            if start in (DAY_MIN, end):
                raise SlaError(
                    f"{where} {text!r} is empty or ambiguous; "
                    'fix: write "all day" for a whole day, or distinct start and end times'
                )
            if end < start or (end == 0 and start > 0):
                end += DAY_MIN  # crosses midnight into the next day
        for d in days:
            week[d].append((start, end))
    return tuple(tuple(sorted(set(w))) for w in week)


def _minute(hhmm: str, text: str, where: str) -> int:
    h, m = (int(x) for x in hhmm.split(":"))
    if m > 59 or h > 24 or (h == 24 and m):
        raise SlaError(f"{where} {text!r}: {hhmm} is not a time; fix: use 00:00 to 24:00")
    return h * 60 + m


def _day_index(word: str, text: str, where: str, accepted: str) -> int:
    word = word.strip()
    for i, full in enumerate(_FULL_NAMES):
        if len(word) >= 3 and full.startswith(word):
            return i
    raise SlaError(f"{where} {text!r}: {word!r} is not a day (Mon..Sun); {accepted}")


def _parse_days(text: str, spec: str, where: str, accepted: str) -> list[int]:
    if text.strip() in ("daily", "every day"):
        return list(range(7))
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = (_day_index(x, spec, where, accepted) for x in part.split("-", 1))
            out.extend((a + k) % 7 for k in range((b - a) % 7 + 1))  # "Fri-Mon" wraps
        else:
            out.append(_day_index(part, spec, where, accepted))
    return out
