"""Support calendars: when the clock of a service-level target runs.

A calendar is weekly open intervals in a time zone, minus closed dates, plus
opened dates (`triage.core.sla.holidays`). Deadlines are asked for thousands of
times a second, so each (calendar, zone) is expanded once into a *timeline*:
sorted open intervals in UTC microseconds with a running total of open time.
Adding open time is then two bisects, whatever the duration. Timelines cover
whole local years and grow on demand. Pure: no clock, no I/O.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from triage.core.sla.holidays import HolidaySet
from triage.errors import TriageError

US = timedelta(microseconds=1)
US_PER_MIN = 60_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_MIN = 1440
HORIZON_YEARS = 10  # a target not met within this many years means "never open"


class SlaError(TriageError, ValueError):
    """A policy file, plan, priority, duration, zone or calendar is unusable.

    The message names the file, the key and the accepted values or the fix, so
    an operator can act on it without reading code.
    """


def to_us(at: datetime) -> int:
    """Aware datetime -> integer UTC microseconds (exact, no float rounding)."""
    return (at - EPOCH) // US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


class Timeline:
    """Open time of one calendar in one zone over local years lo..hi, in UTC µs.

    starts/ends: merged open intervals; cum[i]: open µs from the timeline start
    to ends[i]; days: local date ordinal -> open (start, end) minutes that day;
    bdays: sorted ordinals of the dates with any open time (business days).
    """

    __slots__ = ("zone", "lo", "hi", "t_lo", "t_hi", "starts", "ends", "cum", "days", "bdays")

    def __init__(self, cal: Calendar, zone: ZoneInfo, lo: int, hi: int) -> None:
        self.zone, self.lo, self.hi = zone, lo, hi
        d0, d1 = date(lo, 1, 1).toordinal(), date(hi + 1, 1, 1).toordinal()
        closed: set[int] = set()
        opened: set[int] = set()
        for year in range(lo, hi + 1):
            for source in cal.closed:
                closed.update(source.ordinals(year))
            for source in cal.opened:
                opened.update(source.ordinals(year))
        pieces: dict[int, list[tuple[int, int]]] = {}
        for o in range(d0 - 1, d1):  # the day before lo: its overnight hours reach in
            for s, e in cal.weekly[(o + 6) % 7]:
                a, b = o * DAY_MIN + s, o * DAY_MIN + e
                while a < b:
                    day = a // DAY_MIN
                    cut = min(b, (day + 1) * DAY_MIN)
                    pieces.setdefault(day, []).append((a - day * DAY_MIN, cut - day * DAY_MIN))
                    a = cut
        self.days: dict[int, tuple[tuple[int, int], ...]] = {}
        local: list[list[int]] = []
        for o in range(d0, d1):
            if o in opened:
                segs = [(0, DAY_MIN)]
            elif o in closed:
                continue
            else:
                segs = _merge(pieces.get(o, ()))
            if not segs:
                continue
            self.days[o] = tuple(segs)
            for s, e in segs:
                a, b = o * DAY_MIN + s, o * DAY_MIN + e
                if local and local[-1][1] == a:
                    local[-1][1] = b
                else:
                    local.append([a, b])
        self.bdays = sorted(self.days)
        starts: list[int] = []
        ends: list[int] = []
        for a, b in local:
            ua, ub = _local_minute_to_us(a, zone), _local_minute_to_us(b, zone)
            if ub <= ua:
                continue
            if ends and ua <= ends[-1]:  # DST fold can make neighbours touch
                ends[-1] = max(ends[-1], ub)
            else:
                starts.append(ua)
                ends.append(ub)
        total, cum = 0, []
        for a, b in zip(starts, ends, strict=True):
            total += b - a
            cum.append(total)
        self.starts, self.ends, self.cum = starts, ends, cum
        self.t_lo = _local_minute_to_us(d0 * DAY_MIN, zone)
        self.t_hi = _local_minute_to_us(d1 * DAY_MIN, zone)

    def open_before(self, t: int) -> int:
        """Open µs from the timeline start up to instant t."""
        i = bisect_right(self.starts, t) - 1
        if i < 0:
            return 0
        return self.cum[i] - max(0, self.ends[i] - t)

    def index_at_or_after(self, t: int) -> int:
        """Index of the interval holding t, else of the next one."""
        i = bisect_right(self.starts, t) - 1
        return i if i >= 0 and t < self.ends[i] else i + 1


def _merge(segs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(segs):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _local_minute_to_us(m: int, zone: ZoneInfo) -> int:
    day, minute = divmod(m, DAY_MIN)
    d = date.fromordinal(day)
    return (
        int(datetime(d.year, d.month, d.day, minute // 60, minute % 60, tzinfo=zone).timestamp())
        * 1_000_000
    )


def wall_to_us(ordinal: int, wall_us: int, zone: ZoneInfo) -> int:
    """Local date + wall-clock µs since its midnight (24:00 allowed) -> UTC µs."""
    d = date.fromordinal(ordinal)
    local = datetime(d.year, d.month, d.day, tzinfo=zone) + timedelta(microseconds=wall_us)
    return to_us(local)


def year_of(us: int) -> int:
    return from_us(us).year


@dataclass(slots=True, eq=False)
class Calendar:
    """Weekly open hours in `zone` (None: the ticket's zone), minus closed dates, plus opened."""

    name: str
    zone: str | None
    weekly: tuple[tuple[tuple[int, int], ...], ...]
    closed: tuple[HolidaySet, ...] = ()
    opened: tuple[HolidaySet, ...] = ()
    where: str = ""  # "file: [calendars.name]" for error messages
    description: str = ""
    _timelines: dict[str, Timeline] = field(default_factory=dict, repr=False)

    def timeline(self, zone: ZoneInfo, t_from: int, t_to: int) -> Timeline:
        """The cached timeline of `zone`, grown so that it covers [t_from, t_to)."""
        tl = self._timelines.get(zone.key)
        if tl is not None and tl.t_lo <= t_from and t_to < tl.t_hi:
            return tl
        lo, hi = year_of(t_from) - 1, year_of(t_to) + 1
        if tl is not None:
            lo, hi = min(lo, tl.lo), max(hi, tl.hi)
        tl = Timeline(self, zone, max(lo, 2), min(hi, 9998))
        if not tl.t_lo <= t_from <= t_to < tl.t_hi:
            raise SlaError(
                f"{self.where} cannot count time at {from_us(t_from).isoformat()}; "
                "fix: pass an instant between the years 3 and 9997"
            )
        self._timelines[zone.key] = tl
        return tl

    def _grow(self, zone: ZoneInfo, t: int, tl: Timeline) -> Timeline:
        if tl.hi - year_of(t) >= HORIZON_YEARS or tl.hi >= 9998:
            raise SlaError(
                f"{self.where} has no open time within {HORIZON_YEARS} years of "
                f"{from_us(t).isoformat()}; fix: give `open` some weekly hours "
                "or remove closed dates"
            )
        return self.timeline(zone, t, tl.t_hi + 366 * 86_400_000_000)

    def add_open(self, zone: ZoneInfo, t: int, amount: int) -> tuple[int, Timeline]:
        """First instant at which `amount` µs of open time have passed since t."""
        tl = self.timeline(zone, t, t)
        while True:
            target = tl.open_before(t) + amount
            j = bisect_left(tl.cum, target)
            if j < len(tl.cum):
                return tl.ends[j] - (tl.cum[j] - target), tl
            tl = self._grow(zone, t, tl)

    def open_between(self, zone: ZoneInfo, a: int, b: int) -> int:
        if b <= a:
            return 0
        tl = self.timeline(zone, a, b)
        return tl.open_before(b) - tl.open_before(a)

    def add_business_days(self, zone: ZoneInfo, t: int, n: int) -> BusinessDays:
        """Same wall time on the n-th business day after t (or after the next opening).

        A business day is a local date with open time. If that date is not open
        at that wall time: the end of its last open interval before it, else its opening.
        """
        tl = self.timeline(zone, t, t)
        while True:
            i = tl.index_at_or_after(t)
            if i < len(tl.starts):
                anchor = max(t, tl.starts[i])
                local = from_us(anchor).astimezone(zone)
                d0 = local.toordinal()
                k = bisect_right(tl.bdays, d0) + n - 1
                if k < len(tl.bdays):
                    break
            tl = self._grow(zone, t, tl)
        tod = ((local.hour * 60 + local.minute) * 60 + local.second) * 1_000_000
        tod += local.microsecond
        day = tl.bdays[k]
        segs = tl.days[day]
        wall, note = tod, ""
        if not any(s * US_PER_MIN <= tod <= e * US_PER_MIN for s, e in segs):
            before = [e for s, e in segs if e * US_PER_MIN < tod]
            if before:
                wall, note = before[-1] * US_PER_MIN, "that day closes earlier: due at its close"
            else:
                wall, note = segs[0][0] * US_PER_MIN, "that day opens later: due at its opening"
        return BusinessDays(
            due=wall_to_us(day, wall, zone),
            anchor=anchor,
            days=tuple(tl.bdays[k - n + 1 : k + 1]),
            note=note,
        )


@dataclass(frozen=True, slots=True)
class BusinessDays:
    due: int
    anchor: int  # arrival, or the next opening when it arrived outside open time
    days: tuple[int, ...]  # the business days counted (ordinals)
    note: str
