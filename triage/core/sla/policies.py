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
from zoneinfo import ZoneInfo

from triage.core.sla.calendars import (
    HOURS,
    NONE,
    BusinessDays,
    Calendar,
    SlaError,
    Timeline,
    bad,
    from_us,
    load_calendars,
    only_keys,
    parse_duration,
    table_at,
    to_us,
    zone_named,
)

__all__ = [
    "Deadline", "Plan", "Policies", "Policy", "SlaError", "Target",
    "due", "load_policies", "parse_duration", "progress",
]  # fmt: skip

MAX_WALK_INTERVALS = 8  # longer walks keep the first 4 and last 3 and say how many were skipped


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


@dataclass(frozen=True, slots=True, eq=False)  # identity: policies are compared by object
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


def _resolve(
    policy: Policy, plan: str | None, rank: int, at: datetime, tz: str
) -> tuple[Target, ZoneInfo, int]:
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
    if target.kind == HOURS or target.amount == 0:
        allowed = target.amount
    else:
        allowed = cal.open_between(zone, t, cal.add_business_days(zone, t, target.amount).due)
    if allowed == 0:
        return 1.0 if n >= t else 0.0
    return cal.open_between(zone, t, n) / allowed


# --------------------------------------------------------------------------- walk text

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


def _stamp(us: int, zone: ZoneInfo) -> str:
    return _local(us, zone)[0]


def _span(us: int) -> str:
    minutes = us // 60_000_000
    return f"{minutes // 60}h{minutes % 60:02}m"


def _walk_hours(tl: Timeline, zone: ZoneInfo, t: int, d: int) -> list[str]:
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
        lines.insert(0, f"arrived {_stamp(t, zone)} outside open time")
    return lines


def _index_ending_at_or_after(tl: Timeline, d: int) -> int:
    return bisect_left(tl.ends, d)


def _walk_days(bd: BusinessDays, zone: ZoneInfo, t: int) -> list[str]:
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
        return bad(self.path, key, problem, fix)

    def table(self, parent: dict, key: str, where: str, required: bool = True) -> dict:
        return table_at(self.path, parent, key, where, required)

    def only(self, table: dict, where: str, allowed: tuple[str, ...]) -> None:
        only_keys(self.path, table, where, allowed)

    def policy(self) -> Policy:
        d = self.data
        self.only(d, "-", ("policy", "holidays", "calendars", "plans", "targets"))
        pol = self.table(d, "policy", "policy")
        self.only(
            pol, "policy", ("description", "source", "labels", "aliases", "levels", "default_plan")
        )
        labels = pol.get("labels")
        if (
            not isinstance(labels, list)
            or not labels
            or not all(isinstance(x, str) and x.strip() for x in labels)
            or len({_norm(x) for x in labels}) != len(labels)
        ):
            raise self.bad(
                "policy",
                "'labels' must be a non-empty list of distinct names, most urgent first",
                'write labels = ["P1", "P2", "P3", "P4"]',
            )
        by_rank = {i + 1: x for i, x in enumerate(labels)}
        lookup = {f"p{r}": r for r in by_rank}
        lookup.update({_norm(x): r for r, x in by_rank.items()})
        for alias, label in self.table(pol, "aliases", "policy.aliases", required=False).items():
            rank = lookup.get(_norm(str(label)))
            if rank is None or (_norm(alias) in lookup and lookup[_norm(alias)] != rank):
                raise self.bad(
                    "policy.aliases",
                    f"{alias!r} = {label!r} is unknown or clashes",
                    f"map each alias to one of {', '.join(labels)}, once",
                )
            lookup[_norm(alias)] = rank
        levels_t = self.table(pol, "levels", "policy.levels")
        if sorted(levels_t) != ["1", "2", "3", "4"]:
            raise self.bad(
                "policy.levels",
                f"keys {sorted(levels_t)} must be exactly 1, 2, 3, 4",
                'write levels = { 1 = "P1", 2 = "P2", 3 = "P3", 4 = "P4" }',
            )
        levels = {}
        for k, v in levels_t.items():
            if not isinstance(v, str) or _norm(v) not in lookup:
                raise self.bad(
                    "policy.levels",
                    f"{k} = {v!r} is not a label",
                    f"use one of {', '.join(labels)}",
                )
            levels[int(k)] = lookup[_norm(v)]
        calendars = load_calendars(self.path, d)
        has_plans, has_targets = "plans" in d, "targets" in d
        if has_plans == has_targets:
            raise self.bad(
                "plans",
                "a policy has either [plans.NAME] tables or one [targets] table",
                "keep one of them",
            )
        if has_targets:
            if "default_plan" in pol:
                raise self.bad(
                    "policy", "'default_plan' given without [plans]", "remove default_plan"
                )
            plans = {None: self.plan(None, self.table(d, "targets", "targets"), by_rank, calendars)}
            default = None
        else:
            plans = {
                str(n): self.plan(str(n), p, by_rank, calendars)
                for n, p in self.table(d, "plans", "plans").items()
            }
            default = pol.get("default_plan")
            if default not in plans:
                raise self.bad(
                    "policy",
                    f"'default_plan' = {default!r} is not a plan",
                    f"use one of {', '.join(str(p) for p in plans)}",
                )
        return Policy(
            name=self.name,
            path=self.path,
            labels=by_rank,
            levels=levels,
            plans=plans,
            default_plan=default,
            calendars=calendars,
            description=str(pol.get("description", "")),
            lookup=lookup,
        )

    def plan(
        self,
        name: str | None,
        table: object,
        by_rank: dict[int, str],
        calendars: dict[str, Calendar],
    ) -> Plan:
        where = "targets" if name is None else f"plans.{name}"
        if not isinstance(table, dict):
            raise self.bad(
                where,
                "is not a table",
                f"write [{where}] with calendar = ... and one table per label",
            )
        labels = list(by_rank.values())
        self.only(table, where, ("description", "calendar", *labels))
        cal_name = table.get("calendar")
        if cal_name not in calendars:
            raise self.bad(
                where,
                f"'calendar' = {cal_name!r} is not a calendar",
                f"use one of {', '.join(calendars)}",
            )
        targets = {}
        for rank, label in by_rank.items():
            cell_where = (
                f"{where}.{label}" if re.fullmatch(r"[\w-]+", label) else f'{where}."{label}"'
            )
            cell = table.get(label)
            if not isinstance(cell, dict):
                raise self.bad(
                    where, f"has no target for {label!r}", f'add [{cell_where}] with respond = "4h"'
                )
            self.only(cell, cell_where, ("respond", "calendar", "seed"))
            if "respond" not in cell:
                raise self.bad(cell_where, "'respond' is missing", 'add respond = "4h"')
            kind, amount = parse_duration(
                cell["respond"], f"{self.path}: [{cell_where}] 'respond' ="
            )
            cname = cell.get("calendar", cal_name)
            if cname not in calendars:
                raise self.bad(
                    cell_where,
                    f"'calendar' = {cname!r} is not a calendar",
                    f"use one of {', '.join(calendars)}",
                )
            targets[rank] = Target(
                rank,
                label,
                str(cell["respond"]),
                kind,
                amount,
                calendars[cname],
                str(cell.get("seed", "")),
            )
        return Plan(name, cal_name, targets, str(table.get("description", "")))
