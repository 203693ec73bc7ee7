"""Failover soak: two `triage run` on one PostgreSQL store, one SIGKILLed every few seconds.

Two daemons share 20 mailboxes of a private Dovecot through their leases
(docs/operations.md, "Two servers"); acknowledgements go to an SMTP sink and every ticket's
`ticket.created` to a webhook receiver. A feeder appends bench/replay.py's generated mix
(through bench/chaos.py's `messages()`: new requests, replies, bounces, auto-replies, list
mail, a few senders over the acknowledgement limit), each conversation in one mailbox, while
every few seconds the daemon holding the most mailboxes is killed with SIGKILL and restarted
after a short pause. Then nothing breaks any more, the backlog clears, both stop with SIGTERM,
and everything is checked:

  * every message stored once, with the outcome its kind asks (a ticket, an append to its
    conversation's ticket, filtered), nothing quarantined; every INBOX empty and each
    message filed once on the server;
  * every ticket's acknowledgement sent once or, past the limit of 5 a day for its sender,
    suppressed; the SMTP sink received exactly the sent rows (the same Message-ID again only
    where a kill fell after the server accepted it: counted); one webhook delivery id per
    ticket, every delivery sent;
  * every mailbox the killed daemon held was taken by a live daemon within lease_seconds +
    5 s of the kill (the lease row), and connected to (its log) soon after.

    .venv/bin/python bench/failover.py                  # 2,000 messages, 20 mailboxes
    .venv/bin/python bench/failover.py --count 300 --mailboxes 6 --kills 4   # a short run
    .venv/bin/python bench/failover.py --ingest         # ingest rates: 1 and 2 daemons on
                                                        # PostgreSQL, 1 on SQLite

Needs root, Debian's dovecot-imapd and postgresql (what `make servers` installs).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from email.utils import parseaddr
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import chaos  # noqa: E402

from tests.support import imap, procs  # noqa: E402
from tests.support.daemon import Daemon, mailbox_tables  # noqa: E402
from tests.support.dovecot import Dovecot  # noqa: E402
from tests.support.postgres import PASSWORD, Postgres  # noqa: E402
from tests.support.smtp_sink import SmtpSink  # noqa: E402

MAILBOX = {"poll_seconds": 1, "timeout": 10, "batch": 25}
DAEMON = {
    "message_timeout": 30,
    "alert_after_failures": 1000,
    "backoff_max_seconds": 1,
    "sla_check_seconds": 60,
    "outbox_seconds": 1,
}
FOLDERS = ("INBOX", "Triage.Processed", "Triage.Filtered", "Triage.Errors")


def box_of(root: str, boxes: list[str]) -> str:
    """The mailbox a conversation goes to: all of it in one, so a reply follows its request."""
    return boxes[int(hashlib.sha1(root.encode()).hexdigest(), 16) % len(boxes)]


class Soak(Daemon):
    """One of the two daemons, in its own session (systemd's cgroup), on the shared store."""

    def __init__(self, tmp: Path, dc: Dovecot, boxes: list[str], url: str, extra: str, **keys):
        super().__init__(
            tmp,
            quick=False,
            own_session=True,
            daemon={**DAEMON, **keys},
            extra=extra + mailbox_tables(tmp, dc, boxes, quick=False, **MAILBOX),
            store_url=url,
            files=tmp.parent / "files",
        )
        self.sessions: list[int] = []  # of every process started, for the leftovers at the end
        self.exits: list[int] = []  # statuses of runs that ended by themselves

    def start(self, **popen: object) -> Soak:
        if self.proc is not None and self.proc.poll() is not None:
            self.exits.append(self.proc.returncode)
        super().start(**popen)
        self.sessions.append(self.proc.pid)  # type: ignore[union-attr]
        return self

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost machine; not an exit by itself."""
        super().kill()
        self.proc = None

    def reap(self) -> int:
        """SIGKILL what killed runs left (parse workers still ending), as systemd would; how
        many there were."""
        left = [p for s in self.sessions for p in procs.session_members(s, str(self.config))]
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(left)


class Leases(threading.Thread):
    """Polls the lease rows every 0.1 s: who held each mailbox when."""

    def __init__(self, url: str) -> None:
        super().__init__(name="leases", daemon=True)
        import psycopg

        self.conn = psycopg.connect(url, password=PASSWORD, autocommit=True)
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.now: dict[str, int] = {}  # mailbox -> pid of the live holder
        self.errors: list[str] = []
        self.waits: list[tuple] = []  # sessions seen waiting on a lock, or idle in a transaction

    def read(self) -> dict[str, int]:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        import psycopg

        try:
            rows = self.conn.execute(
                "SELECT name, owner FROM leases WHERE name LIKE 'mailbox:%%' AND expires_at > %s",
                (stamp,),
            ).fetchall()
        except psycopg.errors.UndefinedTable:  # the first daemon is still making the schema
            return {}
        return {n.removeprefix("mailbox:"): int(o.split(":")[-2]) for n, o in rows}

    def run(self) -> None:
        while not self.halt.wait(0.1):
            try:
                self._look()
            except Exception as exc:  # noqa: BLE001 - one failed look is no verdict
                self.errors.append(repr(exc))

    def _look(self) -> None:
        seen = self.read()
        with self.lock:
            self.now = seen
        # a session waiting on a lock, or idle inside a transaction, for over half a second
        for row in self.conn.execute(
            "SELECT pid, now() - query_start, wait_event_type, wait_event, state, query"
            " FROM pg_stat_activity WHERE application_name = 'triage'"
            " AND (wait_event_type = 'Lock' OR state LIKE 'idle in transaction%%')"
            " AND now() - state_change > interval '0.5 s'"
        ).fetchall():
            self.waits.append((time.monotonic(), row))

    def held(self) -> dict[str, int]:
        with self.lock:
            return dict(self.now)


def wait(predicate, seconds: float, what: str) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    print(f"  (gave up waiting for {what} after {seconds:g} s)", flush=True)
    return False


def held_again(leases: Leases, boxes: list[str], pair: list[Soak], lease: float) -> bool:
    """Wait until every mailbox is held by one of the live daemons (not a killed one's
    lease that has not run out yet)."""

    def live() -> bool:
        held = leases.held()
        return set(held) == set(boxes) and set(held.values()) <= {d.pid for d in pair}

    return wait(live, lease + 10, "every mailbox held by a live daemon")


def servers(tmp: Path, boxes: list[str]) -> tuple[Postgres, str, Dovecot]:
    pg = Postgres.start(tmp)
    url = pg.create_database("soak")
    dc = Dovecot.start(tmp, users={b: f"pw-{b}" for b in boxes}, process_limit=400)
    return pg, url, dc


def soak(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    boxes = [f"box{n:02d}" for n in range(args.mailboxes)]
    items = chaos.messages(args.count, args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="triage-failover-"))
    print(
        f"failover soak: {len(items):,} messages, {len(boxes)} mailboxes, 2 daemons,"
        f" {args.kills} kills, lease_seconds {args.lease:g}, seed {args.seed}; in {tmp}",
        flush=True,
    )
    pg, url, dc = servers(tmp, boxes)
    smtp = SmtpSink.start(tmp)
    hook = chaos.Hook()
    extra = (
        '[identity]\ndomains = ["msp.example"]\nsupport_address = "support@msp.example"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\ntls = "none"\n'
        "allow_insecure = true\ntimeout = 5\n"
    )
    pair = [
        Soak(tmp / name, dc, boxes, url, extra + hook.table(tmp), lease_seconds=args.lease)
        for name in ("a", "b")
    ]
    leases = Leases(url)
    differences: list[str] = []
    lines: list[str] = []
    try:
        for d in pair:
            d.start()
        wait(lambda: len(leases.read()) == len(boxes), 60, "every mailbox held")
        leases.start()
        where = {i.message_id: box_of(i.root, boxes) for i in items}
        feeder = Feeder(dc, items, where, args.feed_seconds)
        t0 = time.monotonic()
        feeder.start()
        kills: list[dict] = []
        gap = args.feed_seconds / (args.kills + 1)
        for k in range(args.kills):
            # the last kill's mailboxes taken again first (each kill takes mailboxes away),
            # then worked a while
            held_again(leases, boxes, pair, args.lease)
            time.sleep(max(0.5, rng.uniform(0.5, 1.5) * gap))
            held = leases.read()
            by_pid = Counter(held.values())
            victim = max(pair, key=lambda d: (by_pid.get(d.pid or -1, 0), rng.random()))
            lost = sorted(b for b, pid in held.items() if pid == victim.pid)
            pid = victim.pid
            victim.kill()
            wall = time.time()
            kills.append({"pid": pid, "lost": lost, "wall": wall})
            time.sleep(rng.uniform(0.5, 3.0))
            victim.start()
            print(
                f"  {time.monotonic() - t0:5.1f} s: kill {k + 1} took {len(lost)} mailboxes"
                f" from pid {pid}; {feeder.appended:,} appended",
                flush=True,
            )
        feeder.join()
        # the last kill's mailboxes taken again, and both daemons up (a SIGTERM before a
        # daemon has set up its handlers ends it as the signal's default would)
        held_again(leases, boxes, pair, args.lease)
        wait(
            lambda: all(len(d.events("daemon_ready")) >= len(d.sessions) for d in pair),
            30,
            "both daemons ready",
        )
        done = wait(
            lambda: (
                all(imap.count(dc, b, "INBOX") == 0 for b in boxes)
                and pair[0].scalar("SELECT COUNT(*) FROM messages") >= len(items)
            ),
            args.settle,
            "every INBOX empty",
        )
        wait(
            lambda: (
                pair[0].scalar(
                    "SELECT (SELECT COUNT(*) FROM outbox WHERE status <> 'sent')"
                    " + (SELECT COUNT(*) FROM deliveries WHERE status <> 'sent')"
                )
                == 0
            ),
            args.settle,
            "the outbox and deliveries sent",
        )
        for table in ("outbox", "deliveries"):
            for row in pair[0].query(
                f"SELECT id, status, attempts, claimed_by, lease_until, next_attempt_at, last_error"
                f" FROM {table} WHERE status <> 'sent' ORDER BY id LIMIT 5"
            ):
                lines.append(f"  unsent {table} row: {row}")
        drained = time.monotonic() - t0
        leases.halt.set()
        codes = [d.stop() for d in pair]
        if codes != [0, 0]:
            differences.append(f"the daemons' exit statuses at SIGTERM were {codes}, not 0")
        if not done:
            differences.append("the mailboxes were not all emptied in time")
        time.sleep(1)
        leftovers = sum(d.reap() for d in pair)
        takeovers = _takeovers(kills, pair, leases, args.lease)
        lines += _check(items, where, boxes, dc, smtp, pair[0], feeder, differences)
        lines += _check_hook(hook, pair[0], differences)
        lines += takeovers.pop("lines")
        lines.append(
            f"database      sessions seen waiting on a lock or idle in a transaction over"
            f" 0.5 s: {len(leases.waits)}; failed looks at the lease rows {len(leases.errors)}"
        )
        for at, row in leases.waits[:5]:
            lines.append(f"  at {at - t0:.1f} s: {row}")
        lines.append(
            f"run           {drained:.0f} s from the first append to every row sent;"
            f" daemon starts {sum(len(d.sessions) for d in pair)},"
            f" exits by themselves {[c for d in pair for c in d.exits]},"
            f" processes left by killed runs {leftovers}"
        )
        differences += takeovers["differences"]
        for d in pair:
            if d.exits:
                differences.append(f"{d.tmp.name} exited by itself: {d.exits}")
            errors = Counter(
                e.get("event") for e in d.events() if e.get("level") in ("error", "critical")
            )
            if errors:
                differences.append(f"{d.tmp.name}'s error-level log events: {dict(errors)}")
    finally:
        leases.halt.set()
        for d in pair:
            if d.running():
                d.kill()
            d.reap()
            d.database.close()
        hook.stop()
        smtp.stop()
        dc.stop()
        pg.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(lines))
    print("PASS" if not differences else "FAIL\n" + "\n".join(f"  - {d}" for d in differences))
    return 0 if not differences else 1


class Feeder(threading.Thread):
    """Appends each message once, to its conversation's mailbox, in order, spread evenly."""

    def __init__(self, dc, items, where, seconds: float) -> None:
        super().__init__(name="feeder", daemon=True)
        self.dc, self.items, self.where, self.seconds = dc, items, where, seconds
        self.appended = 0
        self.retries = 0
        self.error: str | None = None

    def run(self) -> None:
        start = time.monotonic()
        try:
            for n, item in enumerate(self.items):
                due = start + self.seconds * n / len(self.items)
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
                self.retries += chaos.append_once(self.dc, item, self.where[item.message_id])
                self.appended += 1
        except Exception as exc:  # noqa: BLE001 - reported as a difference
            self.error = f"{type(exc).__name__}: {exc}"


def _takeovers(kills: list[dict], pair: list[Soak], leases: Leases, lease: float) -> dict:
    """For each mailbox a kill took away: seconds until a live daemon held its lease (the
    lease rows as polled) and until that daemon logged in to it (its log)."""
    taken: list[float] = []
    connected: list[float] = []
    late: list[str] = []
    logged = [(d, d.events("mailbox_connected")) for d in pair]
    for kill in kills:
        for box in kill["lost"]:
            seconds = _first_held(pair, box, kill, logged)
            if seconds is None:
                late.append(f"{box} after the kill at pid {kill['pid']}: never taken")
                continue
            taken.append(seconds[0])
            if seconds[1] is not None:
                connected.append(seconds[1])
            if seconds[0] > lease + 5:
                late.append(f"{box}: taken {seconds[0]:.1f} s after the kill")
    differences = [f"mailbox picked up late: {x}" for x in late]

    def spread(xs: list[float]) -> str:
        if not xs:
            return "none"
        return f"median {statistics.median(xs):.1f} s, max {max(xs):.1f} s ({len(xs)})"

    return {
        "lines": [
            f"failover      kill -> lease held by a live daemon: {spread(taken)}"
            f" (limit lease_seconds {lease:g} + 5 s); kill -> that daemon logged in to the"
            f" mailbox: {spread(connected)}",
        ],
        "differences": differences,
    }


def _first_held(pair, box, kill, logged) -> tuple[float, float | None] | None:
    """(kill -> lease taken, kill -> logged in) for `box`, from the `lease_taken` and
    `mailbox_connected` events of the runs after the kill (wall clock of the logs)."""
    best: tuple[float, float | None] | None = None
    for d, connects in logged:
        for e in d.events("lease_taken"):
            if e.get("lease") != f"mailbox:{box}":
                continue
            at = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
            if at <= kill["wall"] or int(e["owner"].split(":")[-2]) == kill["pid"]:
                continue
            logged_in = [
                datetime.fromisoformat(c["timestamp"].replace("Z", "+00:00")).timestamp()
                for c in connects
                if c.get("mailbox") == box
            ]
            starts = [
                datetime.fromisoformat(x["timestamp"].replace("Z", "+00:00")).timestamp()
                for x in d.events("daemon_started")
            ]
            ended = min((t for t in starts if t > at), default=float("inf"))  # its run's end
            after = [t - kill["wall"] for t in logged_in if at <= t < ended]
            got = (at - kill["wall"], min(after) if after else None)
            if best is None or got[0] < best[0]:
                best = got
    return best


def _check(items, where, boxes, dc, smtp, d: Soak, feeder: Feeder, diff: list[str]) -> list[str]:
    by_kind = Counter(i.kind for i in items)
    if feeder.error:
        diff.append(f"feeder: {feeder.error}")
    rows = d.query(
        "SELECT m.message_id, m.action, m.reason, t.message_key FROM messages m"
        " LEFT JOIN tickets t ON t.id = m.ticket_id"
    )
    per_mid = Counter(r[0] for r in rows)
    twice = [m for m, c in per_mid.items() if c > 1]
    if twice:
        diff.append(f"{len(twice)} Message-ID(s) stored more than once, e.g. {twice[:3]}")
    got = {r[0]: r for r in rows}
    wrong = []
    for item in items:
        row = got.get(item.message_id)
        want = {"new": "ticket", "reply": "append"}.get(item.kind, "filtered")
        if row is None:
            wrong.append(f"{item.message_id} ({item.kind}) not stored")
        elif row[1] != want:
            wrong.append(f"{item.message_id} ({item.kind}) is {row[1]} ({row[2]}), not {want}")
        elif item.kind in chaos.HUMAN and row[3] != item.root:
            wrong.append(f"{item.message_id} is on the ticket of {row[3]}, not {item.root}")
    diff += wrong[:10]
    if len(wrong) > 10:
        diff.append(f"... and {len(wrong) - 10} more with the wrong outcome")
    tickets = d.scalar("SELECT COUNT(*) FROM tickets")
    if tickets != by_kind["new"]:
        diff.append(f"{tickets} tickets, expected {by_kind['new']}")
    filed: Counter[str] = Counter()
    inbox = 0
    for box in boxes:
        inbox += imap.count(dc, box, "INBOX")
        for folder in FOLDERS[1:]:
            for raw in imap.fetch_all(dc, box, folder):
                filed[chaos._header(raw, "Message-ID") or ""] += 1
    if inbox:
        diff.append(f"{inbox} message(s) left in the INBOXes")
    again = {m: c for m, c in filed.items() if c > 1}
    if again or set(filed) != {i.message_id for i in items}:
        diff.append(
            f"{sum(filed.values())} filed on the server ({len(again)} twice),"
            f" expected each of {len(items)} once"
        )

    # acknowledgements: one per ticket, sent or suppressed; at most the daily limit a sender
    outbox = d.query("SELECT ticket_id, status, message_id, to_addr FROM outbox")
    sent = {r[2]: r for r in outbox if r[1] == "sent" and r[0] is not None}
    per_ticket = Counter(r[0] for r in outbox if r[0] is not None)
    suppressed = {
        t for (t,) in d.query("SELECT ticket_id FROM events WHERE kind = 'auto_reply_suppressed'")
    }
    ticket_ids = [t for (t,) in d.query("SELECT id FROM tickets")]
    odd = [
        t
        for t in ticket_ids
        if (per_ticket.get(t, 0), t in suppressed) not in ((1, False), (0, True))
    ]
    if odd:
        diff.append(f"{len(odd)} ticket(s) without exactly one acknowledgement or suppression")
    per_sender = Counter(parseaddr(r[3])[1].lower() for r in outbox if r[0] is not None)
    over = {s: n for s, n in per_sender.items() if n > chaos.ACKS_PER_DAY}
    if over:
        diff.append(f"senders acknowledged over the daily limit: {over}")
    at_sink = Counter(chaos._header(raw, "Message-ID") for _, _, raw in smtp.messages())
    if set(at_sink) != set(sent):
        diff.append(
            f"the SMTP sink got {len(at_sink)} distinct acknowledgements, {len(sent)} rows sent"
        )
    repeats = sum(at_sink.values()) - len(at_sink)
    return [
        f"appended      {feeder.appended:,}: "
        + ", ".join(f"{k} {by_kind[k]:,}" for k in chaos.KINDS)
        + f" ({feeder.retries} append retries)",
        f"stored        {len(rows):,} rows, {len(per_mid):,} distinct Message-IDs;"
        f" tickets {tickets:,} (expected {by_kind['new']:,})",
        f"server        INBOXes {inbox}, filed {sum(filed.values()):,} ({len(again)} twice)",
        f"acks          sent {len(sent):,}, suppressed {len(suppressed):,}, tickets"
        f" {len(ticket_ids):,}; at the sink {sum(at_sink.values()):,} received,"
        f" {len(at_sink):,} distinct, {repeats} repeated (same Message-ID)",
    ]


def _check_hook(hook: chaos.Hook, d: Soak, diff: list[str]) -> list[str]:
    """Every ticket's ticket.created taken (2xx) under one delivery id, every row sent. A
    request cut off by a kill mid-send (no whole body) is counted, not read."""
    import json

    tickets = {n for (n,) in d.query("SELECT number FROM tickets")}
    ids_of: dict[str, set[str]] = {}
    cut = unverified = 0
    for r in hook.rx.requests:
        try:
            ticket = json.loads(r.body)["data"]["ticket"]
        except (ValueError, KeyError, TypeError):
            cut += 1
            continue
        unverified += r.verified is not True
        ids_of.setdefault(ticket, set()).add(r.headers["webhook-id"])
    accepted = Counter(hook.accepted)
    status = dict(d.query("SELECT status, COUNT(*) FROM deliveries GROUP BY status"))
    missing = sorted(tickets - {t for t, ids in ids_of.items() if ids & set(accepted)})
    split = [t for t, ids in ids_of.items() if len(ids) > 1]
    if missing:
        diff.append(f"{len(missing)} ticket(s) never taken by the webhook, e.g. {missing[:3]}")
    if split:
        diff.append(f"{len(split)} ticket(s) delivered under two webhook-ids, e.g. {split[:3]}")
    if set(status) - {"sent"}:
        diff.append(f"webhook deliveries not all sent: {status}")
    if unverified:
        diff.append(f"{unverified} webhook request(s) failed signature verification")
    again = sum(n - 1 for n in accepted.values() if n > 1)
    return [
        f"webhook       {len(tickets):,} tickets, {len(accepted):,} delivered (2xx),"
        f" {len(hook.rx.requests):,} requests ({cut} cut off by a kill); taken twice {again}"
        f" (same webhook-id); rows {status}"
    ]


def ingest(args: argparse.Namespace) -> int:
    """Rate of `triage run` draining mail already waiting in the mailboxes: one daemon on
    SQLite, one on PostgreSQL, two on PostgreSQL (fresh database, same mail, each run)."""
    boxes = [f"box{n:02d}" for n in range(args.mailboxes)]
    items = chaos.messages(args.count, args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="triage-ingest-"))
    pg = Postgres.start(tmp)
    where = {i.message_id: box_of(i.root, boxes) for i in items}
    results: dict[str, list[float]] = {}
    print(f"ingest: {len(items):,} messages in {len(boxes)} mailboxes, {args.runs} runs each")
    try:
        for run in range(args.runs):
            for name, store, daemons in (
                ("SQLite, 1 daemon", "sqlite", 1),
                ("PostgreSQL, 1 daemon", "pg", 1),
                ("PostgreSQL, 2 daemons", "pg", 2),
            ):
                here = tmp / f"{run}-{store}-{daemons}"
                here.mkdir()
                dc = Dovecot.start(here, users={b: f"pw-{b}" for b in boxes}, process_limit=400)
                for item in items:
                    imap.append(dc, where[item.message_id], "INBOX", item.raw)
                url = pg.create_database(f"r{run}d{daemons}") if store == "pg" else None
                ds = [
                    Daemon(
                        here / str(k),
                        quick=False,
                        daemon={**DAEMON, "lease_seconds": 10},
                        extra=mailbox_tables(here / str(k), dc, boxes, quick=False, **MAILBOX),
                        store_url=url,
                        files=here / "files",
                    )
                    for k in range(daemons)
                ]
                t0 = time.monotonic()
                for d in ds:
                    d.start()
                ok = wait(
                    lambda ds=ds: ds[0].scalar("SELECT COUNT(*) FROM messages") >= len(items),
                    600,
                    "every message stored",
                )
                took = time.monotonic() - t0
                for d in ds:
                    d.stop()
                    d.database.close()
                dc.stop()
                rate = len(items) / took if ok else 0.0
                results.setdefault(name, []).append(rate)
                print(f"  run {run + 1}: {name}: {rate:,.0f} messages/s ({took:.1f} s)", flush=True)
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    base = statistics.median(results["SQLite, 1 daemon"])
    for name, rates in results.items():
        med = statistics.median(rates)
        print(
            f"{name:24} median {med:,.0f} messages/s ({', '.join(f'{r:,.0f}' for r in rates)});"
            f" {med / base:.0%} of SQLite's"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--mailboxes", type=int, default=20)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--lease", type=float, default=10.0, help="[daemon] lease_seconds")
    parser.add_argument("--feed-seconds", type=float, default=100.0)
    parser.add_argument("--settle", type=float, default=300.0, help="seconds to clear the rest")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the run's folder")
    parser.add_argument("--ingest", action="store_true", help="measure ingest rates instead")
    parser.add_argument("--runs", type=int, default=3, help="--ingest: runs of each")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    # SIGTERM unwinds like an exception: the daemons and servers are stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return ingest(args) if args.ingest else soak(args)


if __name__ == "__main__":
    sys.exit(main())
