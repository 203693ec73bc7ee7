"""Deliveries per second from one webhook sink to a local receiver, 1, 4 and 16 at a time.

The receiver runs in its own process (tests/support/http_receiver.py, the standard library's
threaded HTTP server) and checks every Standard Webhooks signature with the reference
verifier, as a real receiver would; the sink signs, POSTs and classifies each delivery, as
the outbox drainer will call it. Each level sends `--count` distinct events; the script
prints deliveries/s, the median and p95 time of one delivery, the CPU the sender and the
receiver used per delivery (the load average too: the machine may be shared), and checks that the receiver verified every one, each id once.

    .venv/bin/python bench/sinks.py
    .venv/bin/python bench/sinks.py --count 4000 --levels 1 4 16 64

Exits 1 if any delivery failed or the receiver's counts disagree.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from tests.support.http_receiver import HttpReceiver  # noqa: E402
from triage.sinks.base import Delivery  # noqa: E402
from triage.sinks.client import make_client  # noqa: E402
from triage.sinks.config import parse_sink  # noqa: E402
from triage.sinks.events import TICKET_CREATED, Event  # noqa: E402
from triage.sinks.webhook import WebhookSink, new_secret  # noqa: E402

AT = datetime(2026, 3, 10, 4, 26, tzinfo=UTC)


def event(n: int) -> Event:
    return Event.for_ticket(
        TICKET_CREATED,
        f"evt_bench_{n}",
        AT,
        ticket=f"T-{n:06d}",
        subject=f"Printer {n} does not print",
        priority="P3",
        due=AT,
        requester=f"user{n}@acme.example",
        company="Acme Corp",
        reasons=["priority: level 3 → P3 (connectwise)"],
        text="The printer on floor 2 prints blank pages since this morning. " * 4,
    )


async def level(
    sink: WebhookSink, events: list[Event], concurrency: int
) -> tuple[float, list[float], int]:
    """(wall seconds, per-delivery seconds, failures) for `events` sent `concurrency` at a time."""
    queue = list(events)
    times: list[float] = []
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while queue:
            e = queue.pop()
            started = time.perf_counter()
            outcome = await sink.deliver(Delivery.first(e, sink.name))
            times.append(time.perf_counter() - started)
            failures += not outcome.ok

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, times, failures


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=2000, help="deliveries per level")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    args = ap.parse_args()
    key = new_secret(secrets.token_bytes(32))
    bad = 0
    with tempfile.TemporaryDirectory() as tmp, HttpReceiver.spawn(tmp, secret=key) as rx:
        (Path(tmp) / "hook.secret").write_text(key)
        print(
            f"receiver pid {rx.proc.pid} at {rx.url}; {args.count} deliveries per level,"
            f" {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start"
        )
        print(
            f"{'at once':>8} {'deliveries/s':>13} {'median ms':>10} {'p95 ms':>8}"
            f" {'sender CPU µs':>14} {'receiver CPU µs':>16}"
        )
        sent_before = 0
        for n, concurrency in enumerate(args.levels):
            table = {
                "name": "bench",
                "kind": "webhook",
                "url": rx.url,
                "secret_file": "hook.secret",
                "events": ["ticket.created"],
                "allow_insecure": True,
                "rate_limit": 1000,
            }
            config = parse_sink(Path(tmp) / "triage.toml", "sink[0]", table)
            events = [event(n * 1_000_000 + i) for i in range(args.count)]

            async def run(config=config, events=events, concurrency=concurrency):
                sink = WebhookSink(
                    config, client=make_client(config.timeout, connections=concurrency)
                )
                try:
                    await level(sink, events[:50], concurrency)  # warm: connections, caches
                    cpu = time.process_time()
                    result = await level(sink, events[50:], concurrency)
                    return result, time.process_time() - cpu
                finally:
                    await sink.aclose()

            rx_cpu = cpu_of(rx.proc.pid)
            (wall, times, failures), cpu = asyncio.run(run())
            rx_cpu = cpu_of(rx.proc.pid) - rx_cpu
            done = len(times)
            times.sort()
            print(
                f"{concurrency:>8} {done / wall:>13,.0f} {statistics.median(times) * 1000:>10.2f}"
                f" {times[int(len(times) * 0.95)] * 1000:>8.2f} {cpu / done * 1e6:>14.0f}"
                f" {rx_cpu / args.count * 1e6:>16.0f}"
            )
            bad += failures
            sent_before += args.count
        stats = rx.stats()
    print(
        f"receiver: {stats['received']} received, {stats['verified']} verified, {stats['ids']} distinct ids"
    )
    ok = bad == 0 and stats["received"] == stats["verified"] == stats["ids"] == sent_before
    if not ok:
        print(f"FAIL: {bad} deliveries failed or the receiver's counts disagree")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
