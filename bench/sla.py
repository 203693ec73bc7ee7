"""Benchmark: SLA deadlines computed per second.

A fixed-seed mix of every policy, plan and priority, random arrival instants
over two years and a handful of time zones, as the daemon would see them.
Run: .venv/bin/python bench/sla.py [N]
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from triage.core import sla  # noqa: E402

ZONES = ("UTC", "America/New_York", "America/Los_Angeles", "Europe/Berlin", "Asia/Manila")


def cases(n: int, seed: int = 7) -> list[tuple]:
    policies = sla.load_policies(ROOT / "rules" / "sla")
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    span = int(timedelta(days=730).total_seconds())
    combos = [(p, plan, rank) for p in policies.values() for plan in p.plans for rank in p.labels]
    out = []
    for _ in range(n):
        p, plan, rank = rng.choice(combos)
        at = start + timedelta(seconds=rng.randrange(span))
        out.append((p, plan, rank, at, rng.choice(ZONES)))
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    work = cases(n)
    for p, plan, rank, at, tz in work[:2000]:  # warm: build the timelines once
        sla.due(p, plan, rank, at, tz)
    due, clock = sla.due, time.perf_counter_ns
    t0 = time.perf_counter()
    for p, plan, rank, at, tz in work:
        due(p, plan, rank, at, tz)
    elapsed = time.perf_counter() - t0
    samples = []
    for p, plan, rank, at, tz in work[: min(n, 20_000)]:
        a = clock()
        due(p, plan, rank, at, tz)
        samples.append(clock() - a)
    samples.sort()
    print(f"{n} deadlines in {elapsed:.3f} s: {n / elapsed:,.0f} deadlines/s (with walk text)")
    print(
        f"median {statistics.median(samples) / 1000:.1f} µs, "
        f"p99 {samples[int(len(samples) * 0.99)] / 1000:.1f} µs per deadline"
    )


if __name__ == "__main__":
    main()
