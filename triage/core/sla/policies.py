"""SLA policies: the values a policy file (rules/sla/NAME.toml) becomes.

A policy names its priority labels, maps the project's four levels onto them,
and gives per plan and label a target ("4h", "3 business days", "0", "none")
counted on a calendar (`triage.core.sla.calendars`). Everything is data so that
an operator can check each number against the contract it came from. Files are
read by `triage.core.sla.loader`; deadlines are `triage.core.sla.deadlines`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from triage.core.sla.calendars import Calendar, SlaError


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


def norm(text: str) -> str:
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
    # [policy] pause_when_pending: the response clock stops while the ticket waits on the
    # customer (triage/core/lifecycle.py); off unless the contract says so
    pause_when_pending: bool = False

    def rank_of(self, priority: str) -> int:
        """'P2', the policy's own label or an alias (any case/spacing) -> rank."""
        rank = self.lookup.get(norm(priority)) if isinstance(priority, str) else None
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
        from triage.core.sla.loader import read_policy  # the loader builds these values

        return read_policy(path)


class Policies(dict[str, Policy]):
    """name -> Policy; an unknown name raises SlaError listing the known ones."""

    directory: str = ""

    def __missing__(self, name: str) -> Policy:
        raise SlaError(
            f"{self.directory}: [policy] no policy {name!r}; "
            f"fix: use one of {', '.join(sorted(self))} (a file NAME.toml in {self.directory})"
        )
