"""Sinks under load: event → receiver latency under the running daemon, and ingest with sinks.

1. Latency. `triage run` on a private Dovecot (imaps), one webhook sink pointing at a receiver
   on 127.0.0.1 that checks every signature with the Standard Webhooks reference verifier.
   `--messages` human messages are appended one at a time (`--pause` apart); for each ticket
   the script takes the time from its `created_at` (the batch's clock, read before the rows
   are written: so the figure includes the write and the commit) to the arrival of its
   `ticket.created` at the receiver. Prints p50, p95 and the maximum. Goal: p95 < 1 s.
2. Ingest. Replay of `--count` generated messages (bench/replay.py's mix) into a fresh
   database, alternately with no sink and with three (a webhook, a Slack and a ConnectWise
   sink subscribed to every event they take, so every ticket queues three rows), `--runs`
   times each; prints the medians and their ratio. Goal: ≥ 95 %.

    .venv/bin/python bench/sinks_daemon.py
    .venv/bin/python bench/sinks_daemon.py --messages 200 --count 10000 --runs 5

Exits 1 if a delivery is missing, came twice or failed verification.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from tests.conftest import human  # noqa: E402
from tests.support import dovecot, imap  # noqa: E402
from tests.support.daemon import Daemon, wait_for  # noqa: E402
from tests.support.http_receiver import HttpReceiver  # noqa: E402
from triage import instants  # noqa: E402
from triage.sinks.webhook import new_secret  # noqa: E402

SECRET = new_secret(b"b" * 32)


def pct(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def latency(tmp: Path, messages: int, pause: float) -> int:
    secret = tmp / "hook.secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    dc = dovecot.Dovecot.start(tmp / "dovecot")
    rx = HttpReceiver.start(secret=SECRET)
    d = Daemon(
        tmp / "daemon",
        dc,
        extra=(
            f'[[sink]]\nname = "hook"\nkind = "webhook"\nurl = "{rx.url}"\n'
            f'secret_file = "{secret}"\nallow_insecure = true\nevents = ["ticket.created"]\n'
        ),
    )
    try:
        d.start()
        wait_for(lambda: d.query("SELECT state FROM mailbox_state") == [("idle",)], 30, "idle")
        for n in range(messages):
            raw = human(
                Message_ID=f"<lat{n}@bench.example>",
                From=f"User {n} <user{n}@acme.example>",
                Subject=f"Laptop {n} will not start",
            )
            imap.append(dc, "support", "INBOX", raw)
            time.sleep(pause)
        wait_for(lambda: len(rx.requests) >= messages, 60, "every delivery")
        time.sleep(1.0)  # anything sent twice would arrive now
        created = dict(d.query("SELECT number, created_at FROM tickets"))
        assert d.stop() == 0
    finally:
        if d.running():
            d.kill()
        rx.stop()
        dc.stop()
    ids = Counter(r.headers.get("webhook-id") for r in rx.requests)
    arrived = {r.json()["data"]["ticket"]: r.at for r in rx.requests}
    lags = [arrived[t] - instants.stored(at).timestamp() for t, at in created.items()]
    bad = sum(not r.verified for r in rx.requests)
    print(
        f"latency  {messages} tickets, one every {pause * 1000:.0f} ms: commit → receiver"
        f" p50 {statistics.median(lags) * 1000:.0f} ms, p95 {pct(lags, 95) * 1000:.0f} ms,"
        f" max {max(lags) * 1000:.0f} ms; {len(rx.requests)} requests, {len(ids)} distinct,"
        f" {bad} unverified",
        flush=True,
    )
    ok = len(created) == messages and len(ids) == messages and max(ids.values()) == 1
    return 0 if ok and not bad else 1


THREE_SINKS = """
[[sink]]
name = "hook"
kind = "webhook"
url = "https://hooks.example.com/triage"
secret_file = "hook.secret"
events = ["ticket.created", "ticket.appended", "message.quarantined"]

[[sink]]
name = "oncall"
kind = "slack"
url_file = "slack.url"
events = ["ticket.created", "sla.warning", "sla.breached"]

[[sink]]
name = "psa"
kind = "connectwise"
site = "cw.example.com"
company_id = "examplecorp"
public_key = "pub"
private_key_file = "cw.key"
client_id = "6c7a0d4e-1f2b-4c3d-9e8f-a1b2c3d4e5f6"
board = 1
default_company = "Catchall"
events = ["ticket.created", "ticket.appended"]
"""


def replay_once(folder: Path, config: Path, db: Path) -> tuple[float, int]:
    from triage import log
    from triage.config import load_config
    from triage.core.pipeline import Rules
    from triage.engine.replay import replay
    from triage.sources.files import iter_paths
    from triage.store.sqlite import Store

    log.setup("warning")
    start = time.perf_counter()
    cfg = load_config(config)
    rules = Rules.load(cfg)
    store = Store(db)
    store.outbox_status = "replay"
    at = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
    summary = replay(iter_paths([folder]), rules, store, at, lambda d: None)
    rows = store.conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]
    store.close()
    return summary.total / (time.perf_counter() - start), rows


def ingest(tmp: Path, count: int, runs: int) -> int:
    from replay import generate

    mail = tmp / "mail"
    mail.mkdir()
    for k, raw in enumerate(generate(count)):
        (mail / f"{k:06d}.eml").write_bytes(raw)
    for name, text in (
        ("hook.secret", SECRET),
        ("slack.url", "https://x.example/h"),
        ("cw.key", "k"),
    ):
        (tmp / name).write_text(text + "\n")
    none, three = tmp / "none.toml", tmp / "three.toml"
    none.write_text("")
    three.write_text(THREE_SINKS)
    rates: dict[str, list[float]] = {"none": [], "three": []}
    queued = 0
    for n in range(runs):
        order = (
            (("none", none), ("three", three)) if n % 2 == 0 else (("three", three), ("none", none))
        )
        for name, config in order:
            rate, rows = replay_once(mail, config, tmp / f"{name}{n}.db")
            rates[name].append(rate)
            if name == "three":
                queued = rows
    a, b = statistics.median(rates["none"]), statistics.median(rates["three"])
    print(
        f"ingest   replay of {count:,} messages: no sink {a:,.0f}/s"
        f" ({', '.join(f'{r:,.0f}' for r in rates['none'])}); three sinks {b:,.0f}/s"
        f" ({', '.join(f'{r:,.0f}' for r in rates['three'])}), {queued:,} rows queued;"
        f" ratio {b / a:.1%}; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100, help="tickets for the latency")
    parser.add_argument("--pause", type=float, default=0.1, help="seconds between two")
    parser.add_argument("--count", type=int, default=5000, help="messages replayed")
    parser.add_argument("--runs", type=int, default=3, help="replays with and without sinks")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    if reason := dovecot.skip_reason():
        print(f"latency  skipped: {reason}")
        args.skip_latency = True
    with tempfile.TemporaryDirectory(prefix="bench-sinks-") as tmp:
        failed = 0
        if not args.skip_latency:
            (Path(tmp) / "lat").mkdir()
            failed |= latency(Path(tmp) / "lat", args.messages, args.pause)
        (Path(tmp) / "ingest").mkdir()
        failed |= ingest(Path(tmp) / "ingest", args.count, args.runs)
    return failed


if __name__ == "__main__":
    sys.exit(main())
