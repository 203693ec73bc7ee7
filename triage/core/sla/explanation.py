"""The walk: a deadline explained, one line per open interval or business day counted.

An operator checks a deadline against the contract by reading how it was reached:
arrival, the open intervals consumed (or business days counted), and the due
time, each stamped in the calendar's zone.
"""

from __future__ import annotations

from bisect import bisect_left
from datetime import date
from zoneinfo import ZoneInfo

from triage.core.sla.calendars import BusinessDays, Timeline, from_us

MAX_WALK_INTERVALS = 8  # longer walks keep the first 4 and last 3 and say how many were skipped
_WD = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _local(us: int, zone: ZoneInfo) -> tuple[str, str, int]:
    """(full stamp, clock, local date ordinal) of an instant; cached, as walks reuse boundaries."""
    key = (us, zone.key)
    got = _STAMPS.get(key)
    if got is None:
        if len(_STAMPS) > 50_000:
            _STAMPS.clear()
        dt = from_us(us).astimezone(zone)
        clock = f"{dt.hour:02}:{dt.minute:02}" + (f":{dt.second:02}" if dt.second else "")
        full = f"{_WD[dt.weekday()]} {dt.year}-{dt.month:02}-{dt.day:02} {clock} {dt.tzname()}"
        got = _STAMPS[key] = (full, clock, dt.toordinal())
    return got


_STAMPS: dict[tuple[int, str], tuple[str, str, int]] = {}


def stamp(us: int, zone: ZoneInfo) -> str:
    """An instant as the walk shows it: "Mon 2026-03-09 09:30 EDT"."""
    return _local(us, zone)[0]


def _span(us: int) -> str:
    minutes = us // 60_000_000
    return f"{minutes // 60}h{minutes % 60:02}m"


def walk_hours(tl: Timeline, zone: ZoneInfo, t: int, d: int) -> list[str]:
    """One line per open interval consumed between arrival t and deadline d."""
    first = tl.index_at_or_after(t)
    last = max(first, _index_ending_at_or_after(tl, d))
    lines, total, skipped = [], 0, 0
    count = last - first + 1
    for k in range(first, last + 1):
        a, b = max(tl.starts[k], t), min(tl.ends[k], d)
        total += b - a
        if count > MAX_WALK_INTERVALS and 4 <= k - first < count - 3:
            skipped += b - a
            if k - first == count - 4:
                lines.append(
                    f"… {count - 7} more open intervals: +{_span(skipped)} = {_span(total)}"
                )
            continue
        start, end = _local(a, zone), _local(b, zone)
        lines.append(
            f"open {start[0]} → {end[1] if start[2] == end[2] else end[0]}: "
            f"+{_span(b - a)} = {_span(total)}"
        )
    if t < tl.starts[first]:
        lines.insert(0, f"arrived {stamp(t, zone)} outside open time")
    return lines


def _index_ending_at_or_after(tl: Timeline, d: int) -> int:
    return bisect_left(tl.ends, d)


def walk_days(bd: BusinessDays, zone: ZoneInfo, t: int) -> list[str]:
    """Arrival, the business days counted (the first ten) and why the hour moved, if it did."""
    if bd.anchor == t:
        lines = [f"arrived {stamp(t, zone)} in open time"]
    else:
        lines = [
            f"arrived {stamp(t, zone)} outside open time; counting from the next "
            f"opening {stamp(bd.anchor, zone)}"
        ]
    days = [date.fromordinal(o) for o in bd.days]
    shown = [f"{_WD[d.weekday()]} {d:%m-%d}" for d in days[:10]]
    more = f" … {len(days) - 10} more" if len(days) > 10 else ""
    lines.append(f"business days counted: {', '.join(shown)}{more}")
    if bd.note:
        lines.append(bd.note)
    return lines
