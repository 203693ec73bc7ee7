"""SLA engine: response deadlines from policy files in rules/sla/.

A policy (one TOML file) names its priority labels, maps the project's four
levels onto them, and gives per plan and label a target ("4h", "3 business
days", "0", "none") counted on a calendar (see triage.calendar). Everything is
data so that an operator can check each number against the contract it came
from. Pure: no clock, no I/O except `Policy.from_toml` / `load_policies`.
"""

from __future__ import annotations

import re
import tomllib
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import holidays as holidays_pkg

from triage.calendar import (
    OBSERVE,
    Calendar,
    HolidayRule,
    HolidaySet,
    SlaError,
    Timeline,
    from_us,
    package_names,
    parse_open,
    to_us,
    zone_named,
)

__all__ = [
    "Deadline",
    "Plan",
    "Policies",
    "Policy",
    "SlaError",
    "Target",
    "due",
    "load_policies",
    "parse_duration",
    "progress",
]

HOURS, BUSINESS_DAYS, NONE = "hours", "business days", "none"
MAX_WALK_INTERVALS = 8  # longer walks keep the first 4 and last 3 and say how many were skipped
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


@dataclass(frozen=True, slots=True)
class Target:
    """One table cell: a label's response target on a plan."""

    rank: int
    label: str
    text: str  # as written in the file, e.g. "4h"
    kind: str
    amount: int
    calendar: Calendar
    seed: str = ""  # the seed document's cell, verbatim


@dataclass(frozen=True, slots=True)
class Plan:
    name: str | None
    calendar: str
    targets: dict[int, Target]
    description: str = ""


@dataclass(frozen=True, slots=True)
class Deadline:
    due: datetime | None  # aware, UTC; None: no deadline (best effort, user scheduled)
    policy: str
    plan: str | None
    label: str  # the policy's own label, e.g. "P2", "1 - Urgent"
    rank: int  # 1 = most urgent in the policy's own scale
    calendar: str
    target: str  # as written, e.g. "4h", "3 business days", "none"
    walk: tuple[str, ...]


def _norm(text: str) -> str:
    return "".join(text.split()).casefold()


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed policy file. `plans` is keyed by plan name, or {None: plan} without plans."""

    name: str
    path: str
    labels: dict[int, str]
    levels: dict[int, int]
    plans: dict[str | None, Plan]
    default_plan: str | None
    calendars: dict[str, Calendar]
    description: str = ""
    lookup: dict[str, int] = field(default_factory=dict, repr=False)

    def rank_of(self, priority: str) -> int:
        """'P2', the policy's own label or an alias (any case/spacing) -> rank."""
        rank = self.lookup.get(_norm(priority)) if isinstance(priority, str) else None
        if rank is None:
            own = ", ".join(repr(v) for v in self.labels.values())
            raise SlaError(
                f"{self.path}: [policy] labels has no priority {priority!r}; "
                f"fix: use P1..P{len(self.labels)} or one of {own} (any case)"
            )
        return rank

    def label_for_level(self, level: int) -> str:
        """Project level (1 most urgent .. 4 low) -> this policy's label."""
        rank = self.levels.get(level)
        if rank is None:
            raise SlaError(
                f"{self.path}: [policy] levels has no level {level!r}; fix: use 1, 2, 3 or 4"
            )
        return self.labels[rank]

    def plan(self, name: str | None) -> Plan:
        """The named plan, the default plan for None; SlaError naming the accepted plans."""
        found = self.plans.get(self.default_plan if name is None else name)
        if found is None:
            if None in self.plans:
                raise SlaError(
                    f"{self.path}: [targets] policy {self.name!r} has no plans, got {name!r}; "
                    'fix: pass no plan (in the config: plan = "")'
                )
            raise SlaError(
                f"{self.path}: [plans] has no plan {name!r}; "
                f"fix: use one of {', '.join(str(p) for p in self.plans)}"
            )
        return found

    def target(self, plan: str | None, rank: int) -> Target:
        chosen = self.plan(plan)
        found = chosen.targets.get(rank)
        if found is None:
            raise SlaError(
                f"{self.path}: [policy] labels has no rank {rank!r}; "
                f"fix: use 1..{len(self.labels)} ({', '.join(self.labels.values())})"
            )
        return found

    @classmethod
    def from_toml(cls, path: Path) -> Policy:
        """Read and check one policy file; SlaError names the file, key and fix."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise SlaError(f"{path}: [-] cannot be read as TOML ({exc}); fix: correct it") from None
        return _Loader(str(path), path.stem, data).policy()


class Policies(dict[str, Policy]):
    """name -> Policy; an unknown name raises SlaError listing the known ones."""

    directory: str = ""

    def __missing__(self, name: str) -> Policy:
        raise SlaError(
            f"{self.directory}: [policy] no policy {name!r}; "
            f"fix: use one of {', '.join(sorted(self))} (a file NAME.toml in {self.directory})"
        )


def load_policies(directory: Path) -> Policies:
    """Every *.toml in `directory`, keyed by file stem."""
    directory = Path(directory)
    files = sorted(directory.glob("*.toml")) if directory.is_dir() else []
    if not files:
        raise SlaError(
            f"{directory}: [-] holds no policy files; fix: point the rules dir at a folder "
            "with rules/sla/*.toml"
        )
    out = Policies()
    out.directory = str(directory)
    for f in files:
        out[f.stem] = Policy.from_toml(f)
    return out


# --------------------------------------------------------------------------- deadlines


def _resolve(policy: Policy, plan: str | None, rank: int, at: datetime, tz: str):
    """Checks shared by due() and progress(): target, zone, arrival in µs."""
    target = policy.target(plan, rank)
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise SlaError(
            f"{policy.path}: [at] {at!r} has no time zone; "
            "fix: pass an aware datetime, e.g. datetime(..., tzinfo=UTC)"
        )
    tz_zone = zone_named(tz, f"{policy.path}: [tz]")  # checked even when the calendar pins one
    cal = target.calendar
    zone = tz_zone if cal.zone is None else zone_named(cal.zone, cal.where)
    return target, zone, to_us(at)


def due(policy: Policy, plan: str | None, rank: int, at: datetime, tz: str = "UTC") -> Deadline:
    """Deadline of a ticket of `rank` on `plan` (None: the policy's default) arriving `at`.

    `tz` is the ticket's zone (from its contact or the config); calendars that
    their source pins to a zone ignore it.
    """
    target, zone, t = _resolve(policy, plan, rank, at, tz)
    chosen = policy.plan(plan).name
    cal = target.calendar
    head = f"{target.label} on {'plan ' + chosen if chosen else policy.name}: {target.text}"
    head += f" on calendar {cal.name} ({zone.key})"
    if target.kind == NONE:
        walk: tuple[str, ...] = (f"{head}: no deadline (best effort / user scheduled)",)
        at_utc = None
    elif target.amount == 0:
        walk = (f"{head}: immediate, due at arrival {_stamp(t, zone)}",)
        at_utc = from_us(t)
    elif target.kind == HOURS:
        d, tl = cal.add_open(zone, t, target.amount)
        walk = (head, *_walk_hours(tl, zone, t, d), f"due {_stamp(d, zone)}")
        at_utc = from_us(d)
    else:
        bd = cal.add_business_days(zone, t, target.amount)
        walk = (head, *_walk_days(bd, zone, t), f"due {_stamp(bd.due, zone)}")
        at_utc = from_us(bd.due)
    return Deadline(
        due=at_utc,
        policy=policy.name,
        plan=chosen,
        label=target.label,
        rank=rank,
        calendar=cal.name,
        target=target.text,
        walk=walk,
    )


def progress(
    policy: Policy,
    plan: str | None,
    rank: int,
    received: datetime,
    now: datetime,
    tz: str = "UTC",
) -> float | None:
    """Fraction of the allowed open time used by `now` (1.0 = due; above = late).

    None when the target has no deadline. An immediate target is 0.0 before
    arrival and 1.0 from then on.
    """
    target, zone, t = _resolve(policy, plan, rank, received, tz)
    if target.kind == NONE:
        return None
    n = to_us(now)
    cal = target.calendar
    if target.kind == HOURS:
        allowed = target.amount
    else:
        allowed = cal.open_between(zone, t, cal.add_business_days(zone, t, target.amount).due)
    if allowed == 0:
        return 1.0 if n >= t else 0.0
    return cal.open_between(zone, t, n) / allowed


# --------------------------------------------------------------------------- walk text

_WD = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _local(us: int, zone) -> tuple[str, str, int]:
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


def _stamp(us: int, zone) -> str:
    return _local(us, zone)[0]


def _span(us: int) -> str:
    minutes = us // 60_000_000
    return f"{minutes // 60}h{minutes % 60:02}m"


def _walk_hours(tl: Timeline, zone, t: int, d: int) -> list[str]:
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
                lines.append(f"… {count - 7} more open intervals: +{_span(skipped)} = {_span(total)}")
            continue
        start, end = _local(a, zone), _local(b, zone)
        lines.append(
            f"open {start[0]} → {end[1] if start[2] == end[2] else end[0]}: "
            f"+{_span(b - a)} = {_span(total)}"
        )
    if t < tl.starts[first]:
        lines.insert(0, f"arrived {_stamp(t, zone)} outside open time")
    return lines


def _index_ending_at_or_after(tl: Timeline, d: int) -> int:
    return bisect_left(tl.ends, d)


def _walk_days(bd, zone, t: int) -> list[str]:
    if bd.anchor == t:
        lines = [f"arrived {_stamp(t, zone)} in open time"]
    else:
        lines = [
            f"arrived {_stamp(t, zone)} outside open time; counting from the next "
            f"opening {_stamp(bd.anchor, zone)}"
        ]
    days = [date.fromordinal(o) for o in bd.days]
    shown = [f"{_WD[d.weekday()]} {d:%m-%d}" for d in days[:10]]
    more = f" … {len(days) - 10} more" if len(days) > 10 else ""
    lines.append(f"business days counted: {', '.join(shown)}{more}")
    if bd.note:
        lines.append(bd.note)
    return lines


# --------------------------------------------------------------------------- loader


class _Loader:
    """Turns one parsed TOML document into a Policy, checking every key."""

    def __init__(self, path: str, name: str, data: dict) -> None:
        self.path, self.name, self.data = path, name, data

    def bad(self, key: str, problem: str, fix: str) -> SlaError:
        return SlaError(f"{self.path}: [{key}] {problem}; fix: {fix}")

    def table(self, parent: dict, key: str, where: str, required: bool = True) -> dict:
        value = parent.get(key)
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            raise self.bad(where, f"{key!r} is missing or not a table", f"add a [{where}] table")
        return value

    def only(self, table: dict, where: str, allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                raise self.bad(
                    where, f"{key!r} is not a known key", f"use one of {', '.join(allowed)}"
                )

    def policy(self) -> Policy:
        d = self.data
        self.only(d, "-", ("policy", "holidays", "calendars", "plans", "targets"))
        pol = self.table(d, "policy", "policy")
        self.only(pol, "policy", ("description", "source", "labels", "aliases", "levels", "default_plan"))
        labels = pol.get("labels")
        if (
            not isinstance(labels, list)
            or not labels
            or not all(isinstance(x, str) and x.strip() for x in labels)
            or len({_norm(x) for x in labels}) != len(labels)
        ):
            raise self.bad(
                "policy", "'labels' must be a non-empty list of distinct names, most urgent first",
                'write labels = ["P1", "P2", "P3", "P4"]',
            )
        by_rank = {i + 1: x for i, x in enumerate(labels)}
        lookup = {f"p{r}": r for r in by_rank}
        lookup.update({_norm(x): r for r, x in by_rank.items()})
        for alias, label in self.table(pol, "aliases", "policy.aliases", required=False).items():
            rank = lookup.get(_norm(str(label)))
            if rank is None or (_norm(alias) in lookup and lookup[_norm(alias)] != rank):
                raise self.bad(
                    "policy.aliases", f"{alias!r} = {label!r} is unknown or clashes",
                    f"map each alias to one of {', '.join(labels)}, once",
                )
            lookup[_norm(alias)] = rank
        levels_t = self.table(pol, "levels", "policy.levels")
        if sorted(levels_t) != ["1", "2", "3", "4"]:
            raise self.bad(
                "policy.levels", f"keys {sorted(levels_t)} must be exactly 1, 2, 3, 4",
                'write levels = { 1 = "P1", 2 = "P2", 3 = "P3", 4 = "P4" }',
            )
        levels = {}
        for k, v in levels_t.items():
            if not isinstance(v, str) or _norm(v) not in lookup:
                raise self.bad("policy.levels", f"{k} = {v!r} is not a label", f"use one of {', '.join(labels)}")
            levels[int(k)] = lookup[_norm(v)]
        sets = {n: self.holiday_set(n, rules) for n, rules in self.table(d, "holidays", "holidays", False).items()}
        calendars = {
            n: self.calendar(n, c, sets) for n, c in self.table(d, "calendars", "calendars").items()
        }
        has_plans, has_targets = "plans" in d, "targets" in d
        if has_plans == has_targets:
            raise self.bad("plans", "a policy has either [plans.NAME] tables or one [targets] table",
                           "keep one of them")
        if has_targets:
            if "default_plan" in pol:
                raise self.bad("policy", "'default_plan' given without [plans]", "remove default_plan")
            plans = {None: self.plan(None, self.table(d, "targets", "targets"), by_rank, calendars)}
            default = None
        else:
            plans = {
                str(n): self.plan(str(n), p, by_rank, calendars)
                for n, p in self.table(d, "plans", "plans").items()
            }
            default = pol.get("default_plan")
            if default not in plans:
                raise self.bad("policy", f"'default_plan' = {default!r} is not a plan",
                               f"use one of {', '.join(str(p) for p in plans)}")
        return Policy(
            name=self.name, path=self.path, labels=by_rank, levels=levels, plans=plans,
            default_plan=default, calendars=calendars,
            description=str(pol.get("description", "")), lookup=lookup,
        )

    def plan(self, name: str | None, table: object, by_rank: dict[int, str],
             calendars: dict[str, Calendar]) -> Plan:
        where = "targets" if name is None else f"plans.{name}"
        if not isinstance(table, dict):
            raise self.bad(where, "is not a table", f"write [{where}] with calendar = ... and one table per label")
        labels = list(by_rank.values())
        self.only(table, where, ("description", "calendar", *labels))
        cal_name = table.get("calendar")
        if cal_name not in calendars:
            raise self.bad(where, f"'calendar' = {cal_name!r} is not a calendar",
                           f"use one of {', '.join(calendars)}")
        targets = {}
        for rank, label in by_rank.items():
            cell_where = f"{where}.{label}" if re.fullmatch(r"[\w-]+", label) else f'{where}."{label}"'
            cell = table.get(label)
            if not isinstance(cell, dict):
                raise self.bad(where, f"has no target for {label!r}",
                               f'add [{cell_where}] with respond = "4h"')
            self.only(cell, cell_where, ("respond", "calendar", "seed"))
            if "respond" not in cell:
                raise self.bad(cell_where, "'respond' is missing", 'add respond = "4h"')
            kind, amount = parse_duration(cell["respond"], f"{self.path}: [{cell_where}] 'respond' =")
            cname = cell.get("calendar", cal_name)
            if cname not in calendars:
                raise self.bad(cell_where, f"'calendar' = {cname!r} is not a calendar",
                               f"use one of {', '.join(calendars)}")
            targets[rank] = Target(rank, label, str(cell["respond"]), kind, amount,
                                   calendars[cname], str(cell.get("seed", "")))
        return Plan(name, cal_name, targets, str(table.get("description", "")))

    def calendar(self, name: str, table: object, sets: dict[str, HolidaySet]) -> Calendar:
        where = f"calendars.{name}"
        if not isinstance(table, dict):
            raise self.bad(where, "is not a table", f'write [{where}] with open = ["Mon-Fri 09:00-17:00"]')
        self.only(table, where, ("description", "zone", "open", "closed", "opened"))
        zone = table.get("zone")
        if zone is not None:
            zone_named(zone, f"{self.path}: [{where}] 'zone' =")
        if "open" not in table:
            raise self.bad(where, "'open' is missing", 'add open = ["Mon-Fri 09:00-17:00"] or open = "24x7"')
        weekly = parse_open(table["open"], f"{self.path}: [{where}] 'open' =")
        closed = self.date_sources(table.get("closed", []), f"{where}.closed", sets)
        opened = self.date_sources(table.get("opened", []), f"{where}.opened", sets)
        if not any(weekly) and not opened:
            raise self.bad(where, "is never open",
                           'give it weekly hours, e.g. open = ["Mon-Fri 09:00-17:00"], or opened dates')
        return Calendar(name, zone, weekly, closed, opened, f"{self.path}: [{where}]",
                        str(table.get("description", "")))

    def date_sources(self, items: object, where: str, sets: dict[str, HolidaySet]) -> tuple[HolidaySet, ...]:
        fix = f"use ISO dates (YYYY-MM-DD) or holiday sets: {', '.join(sets) or '(none defined)'}"
        if not isinstance(items, list):
            raise self.bad(where, "must be a list", fix)
        out, dates = [], []
        for item in items:
            if isinstance(item, date) and not isinstance(item, datetime):
                dates.append(item)
            elif isinstance(item, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", item):
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
        self.only(r, where, ("name", "country", "subdiv", "categories", "names", "observed",
                             "relative_to", "offset_days", "date", "observe", "dates"))
        kinds = [k for k in ("names", "relative_to", "date", "dates") if k in r]
        if len(kinds) != 1:
            raise self.bad(where, f"each rule needs exactly one of names, relative_to, date, dates (got {kinds})",
                           'e.g. names = ["Labor Day"] with country = "US"')
        kind = kinds[0]
        label = str(r.get("name", ""))
        if kind == "dates":
            items = r["dates"]
            if not isinstance(items, list):
                raise self.bad(where, "'dates' must be a list", 'write dates = ["2026-12-28"]')
            return HolidayRule("dates", label, dates=tuple(
                d if isinstance(d, date) else self.iso(str(d), where) for d in items))
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
                raise self.bad(where, f"'date' = {r['date']!r} / 'observe' = {observe!r} not understood",
                               f'write date = "12-24" and observe = one of {", ".join(OBSERVE)}')
            return HolidayRule("annual", label, month_day=month_day, observe=observe)
        country, subdiv = r.get("country"), r.get("subdiv")
        supported = holidays_pkg.list_supported_countries()
        if country not in supported:
            raise self.bad(where, f"'country' = {country!r} is not known to the holidays package",
                           'use an ISO 3166 code such as "US", "DE", "GB"')
        if subdiv is not None and subdiv not in supported[country]:
            raise self.bad(where, f"'subdiv' = {subdiv!r} is not a subdivision of {country}",
                           f"use one of {', '.join(supported[country])}")
        categories = tuple(r.get("categories", ()))
        try:
            known = package_names(country, subdiv, categories)
        except Exception as exc:  # the package's own message says what is wrong
            raise self.bad(where, f"'categories' = {list(categories)} rejected ({exc})",
                           'omit categories or use e.g. ["public"]') from None
        wanted = r["names"] if kind == "names" else [r["relative_to"]]
        if not isinstance(wanted, list) or not all(isinstance(n, str) for n in wanted):
            raise self.bad(where, "'names' must be a list of holiday names", 'write names = ["Labor Day"]')
        for n in wanted:
            if n not in known:
                raise self.bad(where, f"{n!r} is not a {country} holiday in the holidays package",
                               f"use one of {', '.join(sorted(known))}")
        if kind == "names":
            observed = r.get("observed", True)
            if not isinstance(observed, bool):
                raise self.bad(where, "'observed' must be true or false", "write observed = true")
            return HolidayRule("package", label, country, subdiv, categories,
                               names=tuple(wanted), observed=observed)
        offset = r.get("offset_days", 0)
        if not isinstance(offset, int) or isinstance(offset, bool):
            raise self.bad(where, "'offset_days' must be a whole number", "write offset_days = 1")
        return HolidayRule("relative", label, country, subdiv, categories,
                           relative_to=wanted[0], offset_days=offset)

