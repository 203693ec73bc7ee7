"""Holiday rules and sets: the dates a calendar is closed (or opened) on.

A set is an ordered list of rules: dates from the `holidays` package by name,
a day relative to one of them (the day after Thanksgiving), an annual date moved
off weekends and off dates the set already holds, or explicit dates. Each year's
dates are built once and cached, for the calendars' timelines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache

import holidays as holidays_pkg

OBSERVE = ("none", "previous", "next", "nearest")


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


def supported_countries() -> dict[str, list[str]]:
    """Country codes the `holidays` package knows, each with its subdivisions."""
    return holidays_pkg.list_supported_countries()
