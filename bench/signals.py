"""The filter rules measured on labelled real mail written by others (tests/labelled/).

For each category of tests/labelled/MANIFEST.csv, prints how many messages were
filtered, sent to review (when that outcome exists), got a ticket (or were
appended) or were quarantined; for human mail, how many were dropped (filtered),
and which rule dropped them; for machine mail, the share filtered (goal >= 90 %).

The messages themselves are not in this repository: the manifest names the
repository, commit and path of each, and its git blob id. The set is looked for
in $TRIAGE_LABELLED, then ../shared/labelled, then ../labelled beside the checkout.

    .venv/bin/python bench/signals.py [--set DIR] [--rules DIR] [--misses]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.outside import labelled  # noqa: E402

MANIFEST = ROOT / "tests" / "labelled" / "MANIFEST.csv"
HUMAN = "human"
NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)


def manifest_rows() -> list[dict]:
    with MANIFEST.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def locate(explicit: Path | None = None) -> Path | None:
    """The folder holding the labelled messages, or None when it is not on this machine."""
    return labelled("human", explicit)


@dataclass
class Tally:
    total: int = 0
    outcomes: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    misses: list[str] = field(default_factory=list)  # humans filtered, machines ticketed

    @property
    def filtered(self) -> int:
        return self.outcomes["filtered"]

    @property
    def ticketed(self) -> int:
        return self.outcomes["ticket"] + self.outcomes["append"]


def measure(folder: Path, rules, rows: list[dict] | None = None) -> dict[str, Tally]:
    """Each message through stage one and two of the pipeline, as replay runs them."""
    from triage.core.pipeline import analyse, decide
    from triage.store.sqlite import Store

    store = Store(None)
    tallies: dict[str, Tally] = defaultdict(Tally)
    try:
        for row in rows if rows is not None else manifest_rows():
            raw = (folder / row["file"]).read_bytes()
            d = decide(analyse(raw, row["file"], rules), rules, store, NOW)
            t = tallies[row["label"]]
            t.total += 1
            action = str(d.action)
            t.outcomes[action] += 1
            if action == "filtered":
                t.reasons[d.reason] += 1
            human = row["label"] == HUMAN
            if (human and action == "filtered") or (not human and action in ("ticket", "append")):
                t.misses.append(f"{row['file']}: {action} {d.reason or ''}".rstrip())
    finally:
        store.close()
    return dict(tallies)


def table(tallies: dict[str, Tally]) -> str:
    """One line per category; the humans first, machine categories after."""
    head = f"{'category':<14}{'n':>5}{'filtered':>10}{'review':>8}{'ticket':>8}{'quar.':>7}   goal"
    lines = [head, "-" * len(head)]
    order = [HUMAN] + sorted(k for k in tallies if k != HUMAN)
    machine_n = machine_f = 0
    for label in order:
        t = tallies.get(label)
        if t is None:
            continue
        review = t.outcomes["review"]
        if label == HUMAN:
            goal = f"dropped {t.filtered} (goal 0)"
        else:
            machine_n += t.total
            machine_f += t.filtered
            share = 100 * t.filtered / t.total
            goal = f"{share:5.1f} % filtered {'ok' if share >= 90 else '(goal >= 90 %)'}"
        lines.append(
            f"{label:<14}{t.total:>5}{t.filtered:>10}{review:>8}{t.ticketed:>8}"
            f"{t.outcomes['quarantined']:>7}   {goal}"
        )
    if machine_n:
        lines.append(
            f"{'all machine':<14}{machine_n:>5}{machine_f:>10}{'':>8}{'':>8}{'':>7}   "
            f"{100 * machine_f / machine_n:5.1f} % filtered"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", type=Path, help="folder of the labelled messages")
    parser.add_argument("--rules", type=Path, help="a rules folder (default: the shipped rules)")
    parser.add_argument("--misses", action="store_true", help="list every miss and its reason")
    args = parser.parse_args()
    folder = locate(args.set)
    if folder is None:
        print(
            "the labelled messages are not on this machine: put them in ../shared/labelled "
            "(or set TRIAGE_LABELLED); tests/labelled/MANIFEST.csv says where each comes from",
            file=sys.stderr,
        )
        return 2
    from dataclasses import replace

    from triage.config import Config
    from triage.core.pipeline import Rules

    config = Config() if args.rules is None else replace(Config(), rules_dir=args.rules)
    rules = Rules.load(config)
    rows = manifest_rows()
    start = time.perf_counter()
    tallies = measure(folder, rules, rows)
    took = time.perf_counter() - start
    print(f"labelled set  {folder} ({len(rows)} messages, {took:.2f} s)")
    print(table(tallies))
    human = tallies.get(HUMAN)
    if human and human.reasons:
        print("humans filtered by: " + ", ".join(f"{r} {n}" for r, n in human.reasons.items()))
    if args.misses:
        for label, t in sorted(tallies.items()):
            for miss in t.misses:
                print(f"  {label}: {miss}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
