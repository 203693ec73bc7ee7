"""A store with years in it: 1,000,000 messages and 300,000 tickets, and what it costs.

Builds (once; `--cache FILE` keeps it for the next run) a SQLite database made by
`triage.store.sqlite.Store`, so its schema and migrations are the real ones, filled by bulk
SQL in about three years of proportions: every ticket's first message, appends, filtered
mail (about half of all mail), a few quarantined and held for review; the events, outbox rows
and attachment rows they leave; the full-text index rebuilt over them. Then, one run per
figure:

  1. replay rate of bench/replay.py's generated mix into a copy of the big store against into
     an empty store (the engine as replay.py drives it; goal >= 90 %);
  2. wall time of `triage tickets --open`, `triage status`, `triage report` and the desk's
     queue page, in-process (the command's own work, imports done) and as a command
     (interpreter start included); goal < 200 ms each;
  3. `triage prune --older-than 365` on a copy: what it frees and how long each batch holds
     the write lock.

    .venv/bin/python bench/bigstore.py --cache /var/tmp/bigstore.db [--count 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

START = datetime(2023, 12, 1, tzinfo=UTC)
NOW = datetime(2026, 12, 3, 14, 30, tzinfo=UTC)  # the store's last day; replay runs then
WORDS = ("printer", "server", "outlook", "vpn", "password", "reset", "laptop", "screen", "slow")
COMPANIES = [f"client{n}.example" for n in range(120)]
PRIORITIES = (("P1", 1), ("P2", 2), ("P3", 3), ("P4", 4))


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def build(path: Path, messages: int = 1_000_000, tickets: int = 300_000, seed: int = 18) -> None:
    """Fill a new store at `path` (see the module's docstring)."""
    from triage.store.sqlite import Store

    Store(path).close()  # the real schema, every migration run
    rng = random.Random(seed)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-400000")
    conn.execute("BEGIN")
    span = (NOW - START).total_seconds()
    # One mail in every `messages / tickets` opens a ticket; the rest: appends to recent
    # tickets (22 %), filtered (about 47 %), quarantined (0.5 %), held for review (0.1 %).
    kinds = ["append"] * 220 + ["filtered"] * 474 + ["quarantined"] * 5 + ["review"] * 1
    t_rows, m_rows, e_rows, o_rows, a_rows = [], [], [], [], []
    open_from = tickets - 2_500  # the last 2,500 tickets are still being worked on
    ticket_at: list[str] = []
    n_ticket = 0
    flush_every = 50_000

    def flush() -> None:
        conn.executemany(
            "INSERT INTO tickets (id, number, status, subject, requester, requester_name,"
            " participants, company, contact, match, verified, priority, level, policy, plan,"
            " calendar, timezone, target, response_due, created_at, first_response_at,"
            " message_key, vip, closed_at) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            t_rows,
        )
        conn.executemany(
            "INSERT INTO messages (id, message_key, message_id, sha256, source, from_addr,"
            " subject, date, received_at, action, reason, ticket_id, size, body, decision,"
            " fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            m_rows,
        )
        conn.executemany(
            "INSERT INTO events (ticket_id, message_key, kind, at, detail) VALUES (?, ?, ?, ?, ?)",
            e_rows,
        )
        conn.executemany(
            "INSERT INTO outbox (ticket_id, to_addr, subject, message_id, raw, status, attempts,"
            " created_at, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            o_rows,
        )
        conn.executemany(
            "INSERT INTO attachments (message_key, filename, content_type, size, sha256)"
            " VALUES (?, ?, ?, ?, ?)",
            a_rows,
        )
        for rows in (t_rows, m_rows, e_rows, o_rows, a_rows):
            rows.clear()

    for i in range(1, messages + 1):
        at = START + timedelta(seconds=span * i / (messages + 1))
        received = _iso(at)
        want_ticket = n_ticket < tickets * i // messages or n_ticket == 0
        kind = "ticket" if want_ticket else rng.choice(kinds)
        company = rng.choice(COMPANIES)
        sender = f"user{rng.randrange(40)}@{company}"
        subject = " ".join(rng.choices(WORDS, k=rng.randint(3, 8))).capitalize()
        key = f"<m{i}.{rng.randrange(10**9)}@mail.{company}>"
        sha = f"{rng.getrandbits(256):064x}"
        body = None
        ticket_id = None
        reason = None
        decision = {"reasons": [], "match": "exact", "priority": None, "category": None}
        if kind == "ticket":
            n_ticket += 1
            ticket_id = n_ticket
            label, level = rng.choices(PRIORITIES, weights=(3, 17, 50, 30))[0]
            due = at + timedelta(hours=(1, 4, 8, 24)[level - 1])
            done = n_ticket < open_from
            answered = done or rng.random() < 0.4
            responded = at + timedelta(hours=rng.uniform(0.1, 1.3) * (1, 4, 8, 24)[level - 1])
            status = (
                rng.choices(("closed", "resolved"), weights=(95, 5))[0]
                if done
                else rng.choices(("open", "pending", "resolved"), weights=(60, 20, 20))[0]
            )
            t_rows.append(
                (
                    ticket_id,
                    f"T-{ticket_id:06d}",
                    status,
                    subject,
                    sender,
                    "A User",
                    json.dumps([sender]),
                    company,
                    sender,
                    "exact",
                    1,
                    label,
                    level,
                    "connectwise",
                    "standard",
                    "business-hours",
                    "UTC",
                    "respond",
                    _iso(due) if rng.random() < 0.97 else None,
                    received,
                    _iso(responded) if answered else None,
                    key,
                    int(rng.random() < 0.02),
                    _iso(at + timedelta(days=3)) if status == "closed" else None,
                )
            )
            ticket_at.append(received)
            body = " ".join(rng.choices(WORDS, k=rng.randint(20, 60)))
            decision["priority"] = label
            e_rows.append((ticket_id, key, "created", received, json.dumps({"priority": label})))
            if rng.random() < 0.9:
                o_rows.append(
                    (
                        ticket_id,
                        sender,
                        f"[T-{ticket_id:06d}] {subject}",
                        f"<ack{i}@msp.example>",
                        "x" * 1200,
                        "sent",
                        1,
                        received,
                        received,
                    )
                )
                e_rows.append((ticket_id, key, "auto_reply_queued", received, "{}"))
            if answered:
                e_rows.append((ticket_id, key, "first_response", _iso(responded), "{}"))
            if status in ("closed", "resolved"):
                e_rows.append(
                    (ticket_id, None, "status_changed", _iso(at + timedelta(days=3)), "{}")
                )
        elif kind == "append":
            ticket_id = max(1, n_ticket - rng.randrange(min(n_ticket, 400)))
            body = " ".join(rng.choices(WORDS, k=rng.randint(10, 40)))
            subject = "Re: " + subject
            e_rows.append((ticket_id, key, "appended", received, json.dumps({"from": sender})))
        else:
            reason = {
                "filtered": rng.choice(("dsn-bounce", "auto-reply", "list-bulk", "noreply-sender")),
                "quarantined": "parse_error",
                "review": "weak-autoreply-words",
            }[kind]
            if kind == "quarantined":
                key = f"sha256:{sha}"
            decision["reasons"] = [f"filter {reason}: matched a header"]
            decision["category"] = "bounce" if reason == "dsn-bounce" else "autoreply"
            e_rows.append((None, key, kind, received, json.dumps({"reason": reason})))
        if kind in ("ticket", "append") and rng.random() < 0.25:
            a_rows.append(
                (key, f"scan{i}.pdf", "application/pdf", rng.randint(2_000, 60_000), sha[::-1])
            )
        m_rows.append(
            (
                i,
                key,
                key if kind != "quarantined" else None,
                sha,
                f"imap:INBOX/{i}",
                sender,
                subject,
                received,
                received,
                kind,
                reason,
                ticket_id,
                rng.randint(3_000, 40_000),
                body,
                json.dumps(decision),
                f"{rng.getrandbits(64):016x}",
            )
        )
        if len(m_rows) >= flush_every:
            flush()
    flush()
    conn.execute(
        "UPDATE outbox SET status = 'pending', sent_at = NULL WHERE id > "
        "(SELECT MAX(id) - 20 FROM outbox)"
    )
    conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {
            t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("messages", "tickets", "events", "outbox", "attachments")
        }
    finally:
        conn.close()


def copy(src: Path, dst: Path) -> Path:
    """A copy of the store (the big file, its WAL checkpointed into it)."""
    conn = sqlite3.connect(src)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    shutil.copyfile(src, dst)
    with open(dst, "rb+") as fh:  # written out now, not by the kernel during what is timed
        os.fsync(fh.fileno())
    return dst


# -- 1. replay rate -----------------------------------------------------------------------
def _cpu() -> float:
    """CPU seconds of this process and its reaped children (the parsing workers)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def replay_once(folder: Path, db: Path, count: int) -> tuple[float, float]:
    """(messages/s, CPU µs a message) of one replay into `db`, as replay.py drives it."""
    from triage import log
    from triage.config import Config
    from triage.core.pipeline import Rules
    from triage.engine.replay import replay
    from triage.sources.files import iter_paths
    from triage.store.sqlite import Store

    log.setup("warning")
    cpu = _cpu()
    start = time.perf_counter()
    rules = Rules.load(Config(db=db))
    store = Store(db)
    store.outbox_status = "replay"
    summary = replay(iter_paths([folder]), rules, store, NOW, lambda d: None)
    store.close()
    elapsed = time.perf_counter() - start
    assert summary.total == count, summary.counts
    return count / elapsed, (_cpu() - cpu) / count * 1e6


def replay_figures(big: Path, count: int, runs: int) -> None:
    from replay import generate

    messages = generate(count)
    with tempfile.TemporaryDirectory(dir=big.parent) as tmp:
        folder = Path(tmp) / "mail"
        folder.mkdir()
        for n, raw in enumerate(messages):
            (folder / f"{n:06d}.eml").write_bytes(raw)
        empty, full = [], []
        for run in range(runs):  # alternated, so the machine's mood falls on both
            empty.append(replay_once(folder, Path(tmp) / f"empty{run}.db", count))
            target = copy(big, Path(tmp) / "big.db")
            full.append(replay_once(folder, target, count))
            target.unlink()
    e = statistics.median(r for r, _ in empty)
    f = statistics.median(r for r, _ in full)
    pairs = [b[0] / a[0] for a, b in zip(empty, full, strict=True)]
    ce = statistics.median(c for _, c in empty)
    cf = statistics.median(c for _, c in full)
    print(f"replay, {count:,} generated messages, median of {runs} (alternated)")
    print(
        f"  into an empty store     {e:,.0f} messages/s  ({', '.join(f'{r:,.0f}' for r, _ in empty)})"
    )
    print(
        f"  into the big store      {f:,.0f} messages/s  ({', '.join(f'{r:,.0f}' for r, _ in full)})"
    )
    print(
        f"  big / empty             {f / e:.0%}  (goal >= 90 %); run by run {', '.join(f'{x:.0%}' for x in pairs)}"
    )
    print(
        f"  CPU a message           empty {ce:,.0f} µs, big {cf:,.0f} µs: empty / big {ce / cf:.0%}"
    )


# -- 2. reads ------------------------------------------------------------------------------
COMMANDS = {
    "tickets --open": ["tickets", "--open"],
    "status": ["status", "--now", _iso(NOW)],
    "report": ["report", "--now", _iso(NOW)],
    "report --since": ["report", "--now", _iso(NOW), "--since", _iso(NOW - timedelta(days=30))],
}


def in_process(db: Path, args: list[str], runs: int) -> list[float]:
    from click.testing import CliRunner

    from triage.cli import cli

    runner = CliRunner()
    out = []
    for _ in range(runs + 1):  # the first pays the command's imports: not counted
        start = time.perf_counter()
        result = runner.invoke(cli, ["--log-level", "warning", *args, "--db", str(db)])
        out.append(time.perf_counter() - start)
        assert result.exit_code in (0, 1, 2), result.output
    return out[1:]


def as_command(db: Path, args: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "triage.cli", "--log-level", "warning", *args, "--db", str(db)],
            capture_output=True,
        )
        out.append(time.perf_counter() - start)
        assert done.returncode in (0, 1, 2), done.stderr
    return out


def startup(runs: int) -> list[float]:
    """`triage --version`: the interpreter and the command line's own start."""
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "triage.cli", "--version"], capture_output=True)
        out.append(time.perf_counter() - start)
    return out


def queue_page(db: Path, runs: int, path: str = "/triage/queue") -> list[float]:
    from triage.core import sla
    from triage.desk import web

    ds = web.app(db, sla.load_policies(ROOT / "rules" / "sla"), clock=lambda: NOW)

    async def go() -> list[float]:
        out = []
        for _ in range(runs + 1):
            start = time.perf_counter()
            response = await ds.client.get(path)
            out.append(time.perf_counter() - start)
            assert response.status_code == 200, response.text[:500]
        return out[1:]

    return asyncio.run(go())


def upgrade(db: Path) -> None:
    """Bring the store to this code's schema before anything is timed (a cached store built
    by an older release gains the new migrations here, once: this writes to it)."""
    from triage.store import migrations
    from triage.store.sqlite import Store

    conn = sqlite3.connect(db)
    try:
        at = conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()
    if at < migrations.LATEST:
        started = time.perf_counter()
        Store(db).close()
        took = time.perf_counter() - started
        print(f"schema upgraded from version {at} to {migrations.LATEST} in {took:.1f} s")


def read_figures(db: Path, runs: int) -> None:
    def ms(xs: list[float]) -> str:
        """The median and the range, in ms."""
        mid, low, high = (v * 1000 for v in (statistics.median(xs), min(xs), max(xs)))
        return f"{mid:,.0f} ms, {low:,.0f} – {high:,.0f}"

    upgrade(db)
    print(f"reads on the big store, median of {runs} and range (goal < 200 ms each)")
    print(f"  interpreter + `triage --version`  {ms(startup(runs))}")
    for name, args in COMMANDS.items():
        inside = in_process(db, args, runs)
        outside = as_command(db, args, runs)
        print(f"  triage {name:<15} in-process {ms(inside):>18}   as a command {ms(outside):>18}")
    print(f"  desk queue page (GET /triage/queue, in-process)  {ms(queue_page(db, runs))}")
    later = queue_page(db, runs, "/triage/queue?page=10")
    print(f"  desk queue, a later page (GET /triage/queue?page=10)  {ms(later)}")
    every = queue_page(db, runs, "/triage/queue.json?_shape=array")
    print(f"  desk queue as JSON, every row (GET /triage/queue.json)  {ms(every)}")
    today = queue_page(db, runs, "/triage/filtered-today")
    print(f"  desk filtered-today page (GET /triage/filtered-today)  {ms(today)}")


# -- 3. prune ------------------------------------------------------------------------------
def prune_figures(big: Path, days: int) -> None:
    from triage import log
    from triage.store import prune as store_prune
    from triage.store.sqlite import Store

    log.setup("warning")
    with tempfile.TemporaryDirectory(dir=big.parent) as tmp:
        target = copy(big, Path(tmp) / "big.db")
        store = Store(target)
        try:
            started = time.perf_counter()
            dry = store_prune.prune(store, NOW - timedelta(days=days), NOW, dry_run=True)
            dry_s = time.perf_counter() - started
            started = time.perf_counter()
            done = store_prune.prune(store, NOW - timedelta(days=days), NOW)
            done_s = time.perf_counter() - started
        finally:
            store.close()
    locks = sorted(done.lock_ms)
    print(f"prune --older-than {days} on a copy of the big store (in-process)")
    print(f"  dry run   {dry_s:.1f} s: {json.dumps(dry.as_json())}")
    print(f"  prune     {done_s:.1f} s: {json.dumps(done.as_json())}")
    print(
        f"  write lock per batch of {store_prune.BATCH}: median {statistics.median(locks):.0f} ms,"
        f" p95 {locks[int(0.95 * (len(locks) - 1))]:.0f} ms, longest {locks[-1]:.0f} ms"
        f" ({len(locks)} transactions)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, help="keep the built store here; reused if present")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--tickets", type=int, default=300_000)
    parser.add_argument("--count", type=int, default=3_000, help="messages replayed")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prune-days", type=int, default=365)
    parser.add_argument("--skip", action="append", default=[], choices=["replay", "reads", "prune"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        big = args.cache or Path(tmp) / "big.db"
        if not big.exists():
            started = time.perf_counter()
            build(big, args.messages, args.tickets)
            print(f"built {big} in {time.perf_counter() - started:.0f} s")
        size = big.stat().st_size
        print(f"big store {big}: {size / 2**30:.2f} GiB, {counts(big)}")
        print(f"machine {os.cpu_count()} cores, Python {sys.version.split()[0]}")
        if "reads" not in args.skip:
            read_figures(big, args.runs)
        if "replay" not in args.skip:
            replay_figures(big, args.count, args.runs)
        if "prune" not in args.skip:
            prune_figures(big, args.prune_days)


if __name__ == "__main__":
    main()
