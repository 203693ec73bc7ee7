"""Attainment objectives: the share of tickets a policy promises to answer within its target.

A policy file says how long each ticket may wait; some documents also promise only a share of
tickets within it (the ConnectWise Help Desk SOW: "70% of email and PSA tickets are answered in
2 hours or less"). `rules/objectives.toml` holds those shares; a policy without one holds
every ticket to its deadline (100 %).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from triage.errors import TriageError

FILE = "objectives.toml"
EVERY = 100.0
_KEYS = {"percent", "seed", "source"}


class ObjectiveError(TriageError, ValueError):
    """objectives.toml cannot be used; the message names the file, the key and the fix."""

    def __init__(self, path: Path, key: str, problem: str, fix: str) -> None:
        super().__init__(path, f"[{key}] {problem}", fix)


@dataclass(frozen=True, slots=True)
class Objective:
    policy: str
    percent: float = EVERY
    seed: str = ""  # the document's own words; empty for the 100 % default
    source: str = ""

    @property
    def stated(self) -> bool:
        """Whether a document states this share (False: every ticket, by default)."""
        return bool(self.seed)

    def label(self) -> str:
        if self.stated:
            return f"objective {self.percent:g} %"
        return "every ticket (no share stated)"


def default(policy: str) -> Objective:
    return Objective(policy)


def load(path: Path, known: Iterable[str] | None = None) -> dict[str, Objective]:
    """policy name -> Objective from `path` ({} when the file does not exist).

    `known`: the policy names there are; a table for another is an error (a typo would
    otherwise silently draw the 100 % line).
    """
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ObjectiveError(path, "", f"cannot be read: {exc}", "correct the TOML") from None
    names = set(known) if known is not None else None
    out: dict[str, Objective] = {}
    for policy, table in data.items():
        if not isinstance(table, dict):
            raise ObjectiveError(
                path, policy, "is not a table", f"write [{policy}] with percent = 70"
            )
        if names is not None and policy not in names:
            raise ObjectiveError(
                path,
                policy,
                "is not a policy in rules/sla/",
                f"use one of {sorted(names)} or remove the table",
            )
        extra = set(table) - _KEYS
        if extra:
            raise ObjectiveError(
                path, policy, f"unknown key(s) {sorted(extra)}", f"use only {sorted(_KEYS)}"
            )
        percent = table.get("percent")
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise ObjectiveError(
                path, f"{policy}.percent", f"{percent!r} is not a number", "write percent = 70"
            )
        if not 0 < percent <= 100:
            raise ObjectiveError(
                path, f"{policy}.percent", f"{percent} is out of range", "give 0 < percent <= 100"
            )
        seed = table.get("seed", "")
        source = table.get("source", "")
        if not isinstance(seed, str) or not seed.strip():
            raise ObjectiveError(
                path,
                f"{policy}.seed",
                "is missing or not text",
                "quote the sentence of the document that states the share",
            )
        if not isinstance(source, str):
            raise ObjectiveError(path, f"{policy}.source", "is not text", 'write source = "..."')
        out[policy] = Objective(policy, float(percent), seed.strip(), source)
    return out


def for_policy(objectives: Mapping[str, Objective], policy: str) -> Objective:
    return objectives.get(policy) or default(policy)
