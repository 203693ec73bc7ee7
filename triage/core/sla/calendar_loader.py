"""[holidays.*] and [calendars.*] of a policy file -> calendars by name, every key checked.

Errors have one shape, `file: [key] problem; fix: what to write` (`bad`), shared
with the policy loader (`triage.core.sla.loader`).
"""

from __future__ import annotations

import re
from datetime import date, datetime

from triage.core.sla.calendars import Calendar, SlaError
from triage.core.sla.holidays import (
    OBSERVE,
    HolidayRule,
    HolidaySet,
    package_names,
    supported_countries,
)
from triage.core.sla.notation import parse_open, zone_named

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


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
        supported = supported_countries()
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
