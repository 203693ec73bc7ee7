"""One `triage run` watching 100 IMAP mailboxes: latency of new mail against the server's own
push, connections, start-up, and the peak memory of the daemon and its workers.

A private Dovecot (tests/support/dovecot.py) with --mailboxes users, each its own login;
`triage run` on the shipped defaults with one `[[mailbox]]` per user over imaps (the
instance's own CA), plus `[daemon] max_imap_connections` when --max-connections is given.
In one run:

  1. start-up: the process's start until every mailbox's state row says `idle` (with
     --max-connections below the count: `idle` or `polled`);
  2. --count human messages APPENDed one at a time, every --interval seconds, each to a
     mailbox picked at random (seeded), each timed from just before its APPEND until its row
     is committed (the database polled every 5 ms, read-only);
  3. in the same cycle, the server's own push delay: right after each APPEND to a mailbox's
     INBOX, the same message APPENDed to that account's folder `Push`, where a bare client
     per mailbox (a raw socket on the plain port: LOGIN, SELECT Push, IDLE) waits; timed from
     just before that APPEND until the server's `* n EXISTS`: what any IDLE client gets from
     this server (a folder of its own, as bench/imap.py's bare client has: on INBOX the
     daemon's moves made the server fold some announcements together);
  4. the connections the server had open on its imaps port (the daemon's only; sampled
     every 20 ms), the daemon's open files, and the resident memory of the daemon and its
     workers (bench/imap.py's sampler, every 50 ms) over the whole run.

It prints the figures and the goals: p95 of APPEND -> committed row at most the p95 of the
server's push + 50 ms; peak RSS (sum over the daemon and its workers) under 300 MB.

    .venv/bin/python bench/mailboxes.py [--mailboxes 100] [--count 300] [--interval 0.2]
                                        [--max-connections N] [--poll-seconds S] [--seed 1]
                                        [--system-store]
                                        [--checkout DIR]

Needs root and Debian's dovecot-imapd (as the tests that use tests/support/dovecot.py do).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import selectors
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict, deque
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import imap as imap_bench  # noqa: E402

from tests.support import imap  # noqa: E402
from tests.support.daemon import Database, mailbox_tables  # noqa: E402
from tests.support.dovecot import Concurrent, Dovecot, skip_reason  # noqa: E402
from triage.config import load_config  # noqa: E402
from triage.service.connections import plan  # noqa: E402

POLL = 0.005  # database polling for committed rows, seconds
PEAK_EVERY = 0.02  # connection sampling, seconds (every 2 ms took a tenth of a core)
MISSED_AFTER = 15.0  # seconds: a message not committed by then is counted missed
SYSTEM_STORE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's bundle of the system's CAs
PUSH = "Push"  # each account's folder the bare IDLE clients watch
PROCESS_LIMIT = 1000  # Dovecot's default_process_limit here: the daemon's imaps sessions,
# each with a login process for the whole session, plus the bare clients and the writers


CPU_AT = time.process_time()


class Pushes(threading.Thread):
    """A bare IDLE client per mailbox, on raw sockets in one selector loop: records when the
    server announces each APPENDed message (`* n EXISTS` above the count last seen)."""

    def __init__(self, dc: Dovecot, users: list[str]) -> None:
        super().__init__(daemon=True)
        self.selector = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.sent: dict[str, deque[tuple[str, float]]] = defaultdict(deque)  # user -> appends
        self.seen: dict[str, float] = {}  # message id -> when its EXISTS came
        self.at: dict[str, float] = {}  # message id -> just before its APPEND to Push
        self.counts: dict[str, int] = {}
        self.buffers: dict[str, bytes] = {}
        self.done = threading.Event()
        for user in users:
            sock = socket.create_connection((dc.host, dc.port), timeout=10)
            reader = sock.makefile("rb")
            _expect(reader, b"* OK")
            sock.sendall(f"a LOGIN {user} {dc.users[user]}\r\n".encode())
            _expect(reader, b"a OK")
            sock.sendall(f"b SELECT {PUSH}\r\n".encode())
            exists = 0
            while True:
                line = reader.readline()
                if found := re.match(rb"\* (\d+) EXISTS", line):
                    exists = int(found.group(1))
                if line.startswith(b"b "):
                    break
            sock.sendall(b"c IDLE\r\n")
            _expect(reader, b"+")
            reader.detach()
            sock.setblocking(False)
            self.counts[user] = exists
            self.buffers[user] = b""
            self.selector.register(sock, selectors.EVENT_READ, user)

    def expect(self, user: str, mid: str, at: float) -> None:
        with self.lock:
            self.sent[user].append((mid, at))
            self.at[mid] = at

    def run(self) -> None:
        while not self.done.is_set():
            for key, _ in self.selector.select(0.1):
                now = time.perf_counter()
                user = key.data
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    self.selector.unregister(key.fileobj)
                    continue
                *lines, self.buffers[user] = (self.buffers[user] + data).split(b"\r\n")
                for line in lines:
                    if found := re.match(rb"\* (\d+) (EXISTS|EXPUNGE)", line):
                        if found.group(2) == b"EXPUNGE":
                            self.counts[user] -= 1
                            continue
                        new = int(found.group(1)) - self.counts[user]
                        self.counts[user] = int(found.group(1))
                        with self.lock:
                            for _ in range(max(0, new)):
                                if self.sent[user]:
                                    mid, _at = self.sent[user].popleft()
                                    self.seen[mid] = now

    def close(self) -> None:
        self.done.set()
        self.join(5)
        for key in list(self.selector.get_map().values()):
            with contextlib.suppress(OSError):
                key.fileobj.sendall(b"DONE\r\nd LOGOUT\r\n")
                key.fileobj.close()
        self.selector.close()


def _expect(reader, start: bytes) -> None:
    while True:
        line = reader.readline()
        if not line:
            raise RuntimeError(f"connection closed waiting for {start!r}")
        if line.startswith(start):
            return
        if re.match(rb"[a-d] (NO|BAD)", line):
            raise RuntimeError(f"refused: {line!r}")


def pct(values: list[float], q: int) -> float:
    return imap_bench.pct(values, q)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.0f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=100, help="users and [[mailbox]] (100)")
    parser.add_argument("--count", type=int, default=300, help="messages APPENDed (300)")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between (0.2)")
    parser.add_argument(
        "--max-connections", type=int, default=None, help="[daemon] max_imap_connections"
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=None,
        help="poll_seconds of every [[mailbox]]: how often a mailbox polled in turn is looked at",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--system-store",
        action="store_true",
        help="mailboxes without ca_file: the system's CA store (with the instance's CA added, "
        "through SSL_CERT_FILE), as for a server with a public certificate",
    )
    parser.add_argument(
        "--checkout",
        type=Path,
        default=None,
        help="run `triage run` from this checkout (e.g. an export of an earlier commit)",
    )
    args = parser.parse_args()
    reason = skip_reason()
    if reason:
        print(f"skipped: {reason}")
        return 0
    rnd = random.Random(args.seed)
    users = [f"user{n:03d}" for n in range(args.mailboxes)]
    with tempfile.TemporaryDirectory(prefix="bench-mailboxes-") as tmp_name:
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o755)
        with Dovecot.start(
            tmp, users={u: f"pw{n}" for n, u in enumerate(users)}, process_limit=PROCESS_LIMIT
        ) as dc:
            for user in users:
                imap.create(dc, user, PUSH)
            folder = tmp / "daemon"
            daemon_keys = (
                {"max_imap_connections": args.max_connections} if args.max_connections else {}
            )
            keys: dict = {"ca_file": None} if args.system_store else {}
            if args.poll_seconds:
                keys["poll_seconds"] = args.poll_seconds
            d = imap_bench.BenchDaemon(
                folder, None, extra=mailbox_tables(folder, dc, users, quick=False, **keys)
            )
            env = None
            if args.system_store:
                bundle = tmp / "ca-bundle.pem"
                bundle.write_bytes(Path(SYSTEM_STORE).read_bytes() + Path(dc.ca_file).read_bytes())
                env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
                env["SSL_CERT_FILE"] = str(bundle)
            if args.checkout is not None:
                d.checkout = args.checkout.resolve()
            if daemon_keys:  # the harness writes [daemon] last: add the key to it
                text = d.config.read_text().replace(
                    "[daemon]\n", f"[daemon]\nmax_imap_connections = {args.max_connections}\n"
                )
                d.config.write_text(text)
            return run(args, dc, d, users, rnd, env)


def run(args, dc: Dovecot, d, users: list[str], rnd: random.Random, env: dict | None) -> int:
    db = Database(d.db)
    peak = Concurrent(dc, dc.tls_port, every=PEAK_EVERY)
    peak.start()
    pushes: Pushes | None = None
    try:
        d.start(env=env)
        # settled: every mailbox logged in once, and each IDLE or between its turns (while
        # some mailboxes are polled in turn, a turn or two are always under way)
        settled = {"idle", "polled", "connecting", "fetching"} if args.max_connections else {"idle"}
        deadline = time.perf_counter() + 120
        while True:
            rows = db.rows("SELECT mailbox, state, last_ok_at FROM mailbox_state")
            states = {name: state for name, state, _ok in rows}
            if (
                len(rows) == len(users)
                and all(ok for _name, _state, ok in rows)
                and set(states.values()) <= settled
            ):
                break
            if time.perf_counter() > deadline or not d.running():
                raise RuntimeError(f"not every mailbox settled: {states}; see {d.log}")
            time.sleep(0.01)
        started = time.perf_counter() - d.started
        connected_peak = peak.most
        pushes = Pushes(dc, users)
        pushes.start()
        time.sleep(1.0)  # the IDLE commands reach the server
        messages = imap_bench.latency_messages(args.count)
        sent: dict[str, float] = {}
        to: dict[str, str] = {}  # message id -> the mailbox it went to
        committed: dict[str, float] = {}
        others = imap_bench.Background()  # CPU of other work on the machine, from here
        phase = time.perf_counter()
        next_at = phase
        for mid, raw in messages:
            user = rnd.choice(users)
            m = imap.connect(dc, user)
            try:
                now = time.perf_counter()
                if now < next_at:
                    _watch(db, sent, committed, next_at)
                at = time.perf_counter()
                sent[mid] = at
                to[mid] = user
                imap.ok(*m.append("INBOX", None, None, raw), "APPEND")
                pushes.expect(user, mid, time.perf_counter())
                imap.ok(*m.append(PUSH, None, None, raw), "APPEND")
            finally:
                with contextlib.suppress(Exception):
                    m.logout()
            next_at = at + args.interval
            _watch(db, sent, committed, time.perf_counter())
        wait = max(MISSED_AFTER, 3 * (args.poll_seconds or 0))
        _watch(db, sent, committed, time.perf_counter() + wait, until_all=True)
        phase_end = time.perf_counter()
        busy = others.cores()
        assert d.sampler is not None
        d.sampler.sample()
        fds = len(os.listdir(f"/proc/{d.pid}/fd")) if d.pid else 0
        whole = d.sampler.peaks(d.started, phase_end)
        during = d.sampler.peaks(phase, phase_end)
        code = d.stop()
    finally:
        if pushes is not None:
            pushes.close()
        peak.stop()
        db.close()
        if d.proc is not None and d.running():
            d.stop()
    latency = [committed[m] - sent[m] for m in committed]
    push = [pushes.seen[m] - pushes.at[m] for m in pushes.seen]
    missed = len(sent) - len(committed)
    problems, other = d.log_problems()
    print(f"CPU of this script (clients, polling, samplers): {time.process_time() - CPU_AT:,.1f} s")
    report(args, started, connected_peak, peak.most, fds, latency, push, missed, whole, during)
    config = load_config(d.config)
    polled = {
        n
        for s in plan(config.mailboxes, config.daemon.max_imap_connections).values()
        for n in s.polled
    }
    if polled:
        for what, mine in (("IDLE", False), ("polled in turn", True)):
            got = [committed[m] - sent[m] for m in committed if (to[m] in polled) is mine]
            if got:
                print(
                    f"  mailboxes {what} ({len(polled) if mine else len(users) - len(polled)}): "
                    f"APPEND -> committed row median {ms(statistics.median(got))}, p95 "
                    f"{ms(pct(got, 95))}, max {ms(max(got))} over {len(got)}"
                )
    print(
        f"other processes on the machine used {busy:.2f} cores on average while the messages "
        f"were sent (load average now {Path('/proc/loadavg').read_text().split()[0]})"
    )
    print(
        f"daemon exit {code}; log problems: {dict(problems) or 'none'}; non-JSON lines: {len(other)}"
    )
    return 0 if code == 0 and not missed else 1


def _watch(db: Database, sent: dict, committed: dict, until: float, until_all: bool = False):
    """Poll the database for rows of the messages sent and not yet committed until `until`
    (or, with until_all, until every one is in)."""
    while True:
        waiting = [m for m in sent if m not in committed]
        if waiting:
            marks = ",".join("?" * len(waiting))
            now = time.perf_counter()
            for (mid,) in db.rows(
                f"SELECT message_id FROM messages WHERE message_id IN ({marks})", *waiting
            ):
                committed[mid] = now
        if until_all and len(committed) == len(sent):
            return
        if time.perf_counter() >= until:
            return
        time.sleep(POLL)


def report(args, started, connected_peak, peak, fds, latency, push, missed, whole, during):
    mib = imap_bench.mib
    n = args.mailboxes
    bound = args.max_connections or 100
    print(f"machine: {imap_bench.machine()}; {imap_bench.dovecot_version()}")
    store = "the system's CA store + the instance's CA" if args.system_store else "ca_file"
    print(
        f"{n} mailboxes on one Dovecot, imaps ({store}), max_imap_connections {bound}; "
        f"{args.count} messages, one every {args.interval:g} s to a random mailbox"
    )
    print(f"  start-up, process start -> every mailbox settled   {started:,.1f} s")
    print(
        f"  server connections on imaps, most at once          {peak} (at start-up {connected_peak}; bound {bound})"
    )
    print(f"  daemon's open files at the end                     {fds}")
    if latency:
        p95 = pct(latency, 95)
        print(
            f"  APPEND -> committed row                            median {ms(statistics.median(latency))}, "
            f"p95 {ms(p95)}, max {ms(max(latency))} over {len(latency)} ({missed} missed)"
        )
    if push:
        push95 = pct(push, 95)
        print(
            f"  APPEND -> * EXISTS, bare IDLE client, same cycle  median {ms(statistics.median(push))}, "
            f"p95 {ms(push95)}, max {ms(max(push))} over {len(push)}"
        )
    if latency:
        deciles = statistics.quantiles(latency, n=10, method="inclusive")
        print(
            f"  APPEND -> committed row, deciles                   {', '.join(ms(x) for x in deciles)}"
        )
    if latency and push:
        p95 = pct(latency, 95)
        for what, floor in (("push p95", pct(push, 95)), ("push median", statistics.median(push))):
            met = p95 <= floor + 0.05 and not missed
            print(
                f"  goal p95 <= {what} + 50 ms: {ms(p95)} <= {ms(floor + 0.05)}"
                f" -> {'met' if met else 'NOT met'}"
            )
        print(
            "  the daemon's own share, median daemon - median push: "
            f"{ms(statistics.median(latency) - statistics.median(push))}"
        )
    total = whole[1]
    print(
        f"  peak RSS, daemon + workers (sum of VmRSS)          {mib(total)} ({total * 1024 / 1e6:,.0f} MB; "
        f"main {mib(whole[0])}, PSS {mib(whole[2])}); during the messages {mib(during[1])}"
    )
    print(f"  goal RSS < 300 MB: {'met' if total * 1024 / 1e6 < 300 else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
