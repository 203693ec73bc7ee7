"""Policy files -> `Policy` values, every key checked; `load_policies` reads a folder.

Errors name the file, the key and the fix (`bad`: `file: [key] problem; fix: ...`),
so an operator can correct a contract's numbers without reading code. The
calendars a policy counts on are read by `triage.core.sla.calendar_loader`.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from triage.core.sla.calendar_loader import bad, load_calendars, only_keys, table_at
from triage.core.sla.calendars import Calendar, SlaError
from triage.core.sla.notation import parse_duration
from triage.core.sla.policies import Plan, Policies, Policy, Target, norm


def read_policy(path: Path) -> Policy:
    """Read and check one policy file; SlaError names the file, key and fix."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SlaError(f"{path}: [-] cannot be read as TOML ({exc}); fix: correct it") from None
    return _Loader(str(path), path.stem, data).policy()


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
        out[f.stem] = read_policy(f)
    return out


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
            pol,
            "policy",
            (
                "description",
                "source",
                "labels",
                "aliases",
                "levels",
                "default_plan",
                "pause_when_pending",
            ),
        )
        pause = pol.get("pause_when_pending", False)
        if not isinstance(pause, bool):
            raise self.bad(
                "policy",
                f"'pause_when_pending' = {pause!r} is not true or false",
                "write pause_when_pending = true (the clock stops while a ticket is pending)"
                " or remove it",
            )
        labels = pol.get("labels")
        if (
            not isinstance(labels, list)
            or not labels
            or not all(isinstance(x, str) and x.strip() for x in labels)
            or len({norm(x) for x in labels}) != len(labels)
        ):
            raise self.bad(
                "policy",
                "'labels' must be a non-empty list of distinct names, most urgent first",
                'write labels = ["P1", "P2", "P3", "P4"]',
            )
        by_rank = {i + 1: x for i, x in enumerate(labels)}
        lookup = {f"p{r}": r for r in by_rank}
        lookup.update({norm(x): r for r, x in by_rank.items()})
        for alias, label in self.table(pol, "aliases", "policy.aliases", required=False).items():
            rank = lookup.get(norm(str(label)))
            if rank is None or (norm(alias) in lookup and lookup[norm(alias)] != rank):
                raise self.bad(
                    "policy.aliases",
                    f"{alias!r} = {label!r} is unknown or clashes",
                    f"map each alias to one of {', '.join(labels)}, once",
                )
            lookup[norm(alias)] = rank
        levels_t = self.table(pol, "levels", "policy.levels")
        if sorted(levels_t) != ["1", "2", "3", "4"]:
            raise self.bad(
                "policy.levels",
                f"keys {sorted(levels_t)} must be exactly 1, 2, 3, 4",
                'write levels = { 1 = "P1", 2 = "P2", 3 = "P3", 4 = "P4" }',
            )
        levels = {}
        for k, v in levels_t.items():
            if not isinstance(v, str) or norm(v) not in lookup:
                raise self.bad(
                    "policy.levels",
                    f"{k} = {v!r} is not a label",
                    f"use one of {', '.join(labels)}",
                )
            levels[int(k)] = lookup[norm(v)]
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
            pause_when_pending=pause,
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
