"""Support calendars: when the clock of a service-level target runs.

A calendar is weekly open intervals in a time zone, minus closed dates, plus
opened dates. Deadlines are asked for thousands of times a second, so each
(calendar, zone) is expanded once into a *timeline*: sorted open intervals in
UTC microseconds with a running total of open time. Adding open time is then
two bisects, whatever the duration. Timelines cover whole local years and grow
on demand. Pure: no clock, no I/O.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_pkg

from triage.errors import TriageError

US = timedelta(microseconds=1)
US_PER_MIN = 60_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_MIN = 1440
HORIZON_YEARS = 10  # a target not met within this many years means "never open"

_FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SPEC = re.compile(
    r"^(?P<days>[a-z][a-z ,\-]*?)\s+(?:(?P<all>all day)|(?P<s>\d\d?:\d\d)\s*[-–]\s*(?P<e>\d\d?:\d\d))$"
)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
OBSERVE = ("none", "previous", "next", "nearest")


class SlaError(TriageError, ValueError):
    """A policy file, plan, priority, duration, zone or calendar is unusable.

    The message names the file, the key and the accepted values or the fix, so
    an operator can act on it without reading code.
    """


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


def to_us(at: datetime) -> int:
    """Aware datetime -> integer UTC microseconds (exact, no float rounding)."""
    return (at - EPOCH) // US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


# --------------------------------------------------------------------------- durations

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


# --------------------------------------------------------------------------- holidays


@lru_cache(maxsize=4096)
def package_holidays(
    country: str, subdiv: str | None, categories: tuple[str, ...], year: int
) -> tuple[tuple[date, tuple[str, ...]], ...]:
    """Holidays of one year from the `holidays` package, built once (the objects are slow)."""
    kwargs: dict = {"subdiv": subdiv, "years": year}
    if categories:
        kwargs["categories"] = categories
    table = holidays_pkg.country_holidays(country, **kwargs)
    return tuple(
        (day, tuple(n.strip() for n in name.split(";"))) for day, name in sorted(table.items())
    )


def _base_name(name: str) -> tuple[str, bool]:
    """'Christmas Day (observed)' -> ('Christmas Day', True)."""
    if name.endswith(" (observed)"):
        return name[: -len(" (observed)")], True
    return name, False


@dataclass(frozen=True, slots=True)
class HolidayRule:
    """One entry of a holiday set; `kind` says which fields are used.

    package   dates from the `holidays` package whose names are in `names`
              (with `observed`, also the package's "(observed)" dates)
    relative  `offset_days` after the package holiday `relative_to` (day after Thanksgiving)
    annual    the month-day `month_day` every year, moved by `observe` off weekends
              and off dates the set already holds (Christmas Eve)
    dates     explicit dates
    """

    kind: str
    name: str = ""
    country: str = ""
    subdiv: str | None = None
    categories: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    observed: bool = True
    relative_to: str = ""
    offset_days: int = 0
    month_day: tuple[int, int] = (1, 1)
    observe: str = "none"
    dates: tuple[date, ...] = ()

    def add_year(self, year: int, taken: set[date]) -> None:
        """Add this rule's dates in `year` to `taken` (earlier rules' dates are in it)."""
        if self.kind == "dates":
            taken.update(d for d in self.dates if d.year == year)
        elif self.kind == "package":
            for day, names in package_holidays(self.country, self.subdiv, self.categories, year):
                for n in names:
                    base, obs = _base_name(n)
                    if base in self.names and (self.observed or not obs):
                        taken.add(day)
        elif self.kind == "relative":
            for day, names in package_holidays(self.country, self.subdiv, self.categories, year):
                if self.relative_to in names:
                    taken.add(day + timedelta(days=self.offset_days))
        else:  # annual
            day = date(year, *self.month_day)
            moved = _observe(day, self.observe, taken)
            taken.add(day)
            taken.add(moved)


def _observe(day: date, how: str, taken: set[date]) -> date:
    """Move a date off weekends and off dates already taken, in the `how` direction."""
    if how == "none":
        return day
    step = {"previous": -1, "next": 1}.get(how, -1 if day.weekday() == 5 else 1)  # nearest
    while day.weekday() >= 5 or day in taken:
        day += timedelta(days=step)
    return day


@dataclass(slots=True)
class HolidaySet:
    """Named, ordered list of holiday rules with dates cached per year."""

    name: str
    rules: tuple[HolidayRule, ...]
    _years: dict[int, frozenset[int]] = field(default_factory=dict)

    def ordinals(self, year: int) -> frozenset[int]:
        got = self._years.get(year)
        if got is None:
            taken: set[date] = set()
            for rule in self.rules:  # neighbours too: observed and shifted dates cross new year
                for y in (year - 1, year, year + 1):
                    rule.add_year(y, taken)
            got = frozenset(d.toordinal() for d in taken if d.year == year)
            self._years[year] = got
        return got

    def dates(self, year: int) -> list[date]:
        return [date.fromordinal(o) for o in sorted(self.ordinals(year))]


def package_names(country: str, subdiv: str | None, categories: tuple[str, ...]) -> set[str]:
    """Every holiday name the package knows for a country, for validating rule files."""
    names: set[str] = set()
    for year in range(2020, 2036):
        for _, ns in package_holidays(country, subdiv, categories, year):
            names.update(_base_name(n)[0] for n in ns)
    return names


# --------------------------------------------------------------------------- timeline


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


# --------------------------------------------------------------------------- calendar


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


# --------------------------------------------------------------------------- loading


def bad(path: str, key: str, problem: str, fix: str) -> SlaError:
    """The one error shape: `file: [key] problem; fix: what to write`."""
    return SlaError(f"{path}: [{key}] {problem}; fix: {fix}")


def table_at(path: str, parent: dict, key: str, where: str, required: bool = True) -> dict:
    value = parent.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise bad(path, where, f"{key!r} is missing or not a table", f"add a [{where}] table")
    return value


def only_keys(path: str, table: dict, where: str, allowed: tuple[str, ...]) -> None:
    for key in table:
        if key not in allowed:
            raise bad(
                path, where, f"{key!r} is not a known key", f"use one of {', '.join(allowed)}"
            )


def load_calendars(path: str, data: dict) -> dict[str, Calendar]:
    """[holidays.*] and [calendars.*] of a parsed policy file -> calendars by name."""
    loader = _CalendarLoader(path)
    sets = {
        n: loader.holiday_set(n, rules)
        for n, rules in table_at(path, data, "holidays", "holidays", False).items()
    }
    return {
        n: loader.calendar(n, c, sets)
        for n, c in table_at(path, data, "calendars", "calendars").items()
    }


_RULE_KEYS = (
    "name", "country", "subdiv", "categories", "names", "observed",
    "relative_to", "offset_days", "date", "observe", "dates",
)  # fmt: skip


class _CalendarLoader:
    def __init__(self, path: str) -> None:
        self.path = path

    def bad(self, key: str, problem: str, fix: str) -> SlaError:
        return bad(self.path, key, problem, fix)

    def only(self, table: dict, where: str, allowed: tuple[str, ...]) -> None:
        only_keys(self.path, table, where, allowed)

    def calendar(self, name: str, table: object, sets: dict[str, HolidaySet]) -> Calendar:
        where = f"calendars.{name}"
        if not isinstance(table, dict):
            raise self.bad(
                where, "is not a table", f'write [{where}] with open = ["Mon-Fri 09:00-17:00"]'
            )
        self.only(table, where, ("description", "zone", "open", "closed", "opened"))
        zone = table.get("zone")
        if zone is not None:
            zone_named(zone, f"{self.path}: [{where}] 'zone' =")
        if "open" not in table:
            raise self.bad(
                where, "'open' is missing", 'add open = ["Mon-Fri 09:00-17:00"] or open = "24x7"'
            )
        weekly = parse_open(table["open"], f"{self.path}: [{where}] 'open' =")
        closed = self.date_sources(table.get("closed", []), f"{where}.closed", sets)
        opened = self.date_sources(table.get("opened", []), f"{where}.opened", sets)
        if not any(weekly) and not opened:
            raise self.bad(
                where,
                "is never open",
                'give it weekly hours, e.g. open = ["Mon-Fri 09:00-17:00"], or opened dates',
            )
        return Calendar(
            name,
            zone,
            weekly,
            closed,
            opened,
            f"{self.path}: [{where}]",
            str(table.get("description", "")),
        )

    def date_sources(
        self, items: object, where: str, sets: dict[str, HolidaySet]
    ) -> tuple[HolidaySet, ...]:
        fix = f"use ISO dates (YYYY-MM-DD) or holiday sets: {', '.join(sets) or '(none defined)'}"
        if not isinstance(items, list):
            raise self.bad(where, "must be a list", fix)
        out, dates = [], []
        for item in items:
            if isinstance(item, date) and not isinstance(item, datetime):
                dates.append(item)
            elif isinstance(item, str) and _ISO_DATE.match(item):
                dates.append(self.iso(item, where))
            elif isinstance(item, str) and item in sets:
                out.append(sets[item])
            else:
                raise self.bad(where, f"{item!r} is neither a date nor a holiday set", fix)
        if dates:
            out.append(HolidaySet(where, (HolidayRule("dates", dates=tuple(dates)),)))
        return tuple(out)

    def iso(self, text: str, where: str) -> date:
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise self.bad(where, f"{text!r} is not a date", "write YYYY-MM-DD") from None

    def holiday_set(self, name: str, rules: object) -> HolidaySet:
        where = f"holidays.{name}"
        if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
            raise self.bad(where, "must be an array of tables", f"write [[{where}]] blocks")
        return HolidaySet(name, tuple(self.holiday_rule(where, r) for r in rules))

    def holiday_rule(self, where: str, r: dict) -> HolidayRule:
        self.only(r, where, _RULE_KEYS)
        kinds = [k for k in ("names", "relative_to", "date", "dates") if k in r]
        if len(kinds) != 1:
            raise self.bad(
                where,
                f"each rule needs exactly one of names, relative_to, date, dates (got {kinds})",
                'e.g. names = ["Labor Day"] with country = "US"',
            )
        kind = kinds[0]
        label = str(r.get("name", ""))
        if kind == "dates":
            items = r["dates"]
            if not isinstance(items, list):
                raise self.bad(where, "'dates' must be a list", 'write dates = ["2026-12-28"]')
            return HolidayRule(
                "dates",
                label,
                dates=tuple(d if isinstance(d, date) else self.iso(str(d), where) for d in items),
            )
        if kind == "date":
            m = re.fullmatch(r"(\d{2})-(\d{2})", str(r["date"]))
            observe = r.get("observe", "none")
            try:
                month_day = (int(m[1]), int(m[2])) if m else None
                if month_day:
                    date(2024, *month_day)
            except ValueError:
                month_day = None
            if month_day is None or observe not in OBSERVE:
                raise self.bad(
                    where,
                    f"'date' = {r['date']!r} / 'observe' = {observe!r} not understood",
                    f'write date = "12-24" and observe = one of {", ".join(OBSERVE)}',
                )
            return HolidayRule("annual", label, month_day=month_day, observe=observe)
        country, subdiv = r.get("country"), r.get("subdiv")
        supported = holidays_pkg.list_supported_countries()
        if country not in supported:
            raise self.bad(
                where,
                f"'country' = {country!r} is not known to the holidays package",
                'use an ISO 3166 code such as "US", "DE", "GB"',
            )
        if subdiv is not None and subdiv not in supported[country]:
            raise self.bad(
                where,
                f"'subdiv' = {subdiv!r} is not a subdivision of {country}",
                f"use one of {', '.join(supported[country])}",
            )
        categories = tuple(r.get("categories", ()))
        try:
            known = package_names(country, subdiv, categories)
        except Exception as exc:  # the package's own message says what is wrong
            raise self.bad(
                where,
                f"'categories' = {list(categories)} rejected ({exc})",
                'omit categories or use e.g. ["public"]',
            ) from None
        wanted = r["names"] if kind == "names" else [r["relative_to"]]
        if not isinstance(wanted, list) or not all(isinstance(n, str) for n in wanted):
            raise self.bad(
                where, "'names' must be a list of holiday names", 'write names = ["Labor Day"]'
            )
        for n in wanted:
            if n not in known:
                raise self.bad(
                    where,
                    f"{n!r} is not a {country} holiday in the holidays package",
                    f"use one of {', '.join(sorted(known))}",
                )
        if kind == "names":
            observed = r.get("observed", True)
            if not isinstance(observed, bool):
                raise self.bad(where, "'observed' must be true or false", "write observed = true")
            return HolidayRule(
                "package",
                label,
                country,
                subdiv,
                categories,
                names=tuple(wanted),
                observed=observed,
            )
        offset = r.get("offset_days", 0)
        if not isinstance(offset, int) or isinstance(offset, bool):
            raise self.bad(where, "'offset_days' must be a whole number", "write offset_days = 1")
        return HolidayRule(
            "relative",
            label,
            country,
            subdiv,
            categories,
            relative_to=wanted[0],
            offset_days=offset,
        )
