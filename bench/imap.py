"""IMAP ingest by the real daemon against replay from files, IDLE latency and peak memory.

Everything runs against private Dovecot instances on 127.0.0.1 (tests/support/dovecot.py), over imaps
with the instance's own CA, with the same generated mix as bench/replay.py. In one run:

  1. replay of the messages from .eml files into a fresh database (bench/replay.py's
     `replay_rate`, median of --replay-runs);
  2. fetch-only rates from a Dovecot whose INBOX holds the same messages: a bare stdlib imaplib
     loop (UID SEARCH ALL, then UID FETCH BODY.PEEK[] in batches of 500), aioimaplib (same, in
     batches of 100 and of 500, every command under its own timeout), and triage's own
     ImapSession.fetch (RFC822.SIZE then BODY.PEEK[], in the daemon's batches of 100);
  3. `triage run` as a subprocess ingesting that INBOX into a fresh database: the time from
     starting the process until INBOX is empty and `messages` holds every message, while the
     resident memory of the daemon and its worker processes is sampled every 50 ms; repeated
     for smaller counts (--rss-counts) to show whether peak memory grows with the count;
  4. with that daemon idle (IMAP IDLE), --latency-count human messages APPENDed one at a time,
     each timed from the APPEND until its row is committed (polled every 5 ms, read-only).

INBOX is filled before the daemon starts (not timed) with one IMAP connection sending
MULTIAPPEND commands of 500 messages as LITERAL+ literals (`--fill append`, the default), or by
writing the files straight into the maildir's new/ folder (`--fill maildir`).

    .venv/bin/python bench/imap.py [--count 10000] [--skip-latency] [--skip-fetch-only]

Needs root and Debian's dovecot-imapd (as the tests that use tests/support/dovecot.py do).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import replay as replay_bench  # noqa: E402

from tests.support import imap, procs  # noqa: E402
from tests.support.certs import client_ssl_context  # noqa: E402
from tests.support.daemon import Daemon, Database  # noqa: E402
from tests.support.dovecot import Dovecot, skip_reason  # noqa: E402
from tests.support.dovecot_conf import mail_ids  # noqa: E402
from tests.support.procs import find_tool  # noqa: E402

USER = "support"
FETCH_BATCH = 500  # the bare clients' batch
COMMAND_TIMEOUT = 60.0  # seconds, around every IMAP command of the bare clients
SAMPLE_EVERY = 0.05  # memory sampling period, seconds
POLL_EVERY = 0.02  # database polling period during ingest, seconds
LATENCY_POLL = 0.005  # database polling period for the latency figure, seconds


# --------------------------------------------------------------------------- filling INBOX


def fill_append(dc: Dovecot, messages: list[bytes], group: int = 500) -> None:
    """One plain-port connection; MULTIAPPEND of `group` messages per command, as LITERAL+
    literals, so the only round trip is one per group."""
    m = imap.connect(dc, USER, timeout=COMMAND_TIMEOUT)
    try:
        typ, data = m.capability()
        caps = set((data[0] or b"").decode().upper().split())
        if not {"MULTIAPPEND", "LITERAL+"} <= caps:
            for raw in messages:  # the slow way: one round trip per message
                imap.ok(*m.append("INBOX", None, None, raw), "APPEND")
            return
        for n, start in enumerate(range(0, len(messages), group)):
            tag = f"F{n}".encode()
            parts = [tag + b" APPEND INBOX"]
            for raw in messages[start : start + group]:
                parts.append(b" {%d+}\r\n" % len(raw))
                parts.append(raw)
            parts.append(b"\r\n")
            m.send(b"".join(parts))
            while True:
                line = m.readline()
                if not line:
                    raise RuntimeError("connection closed during APPEND")
                if line.startswith(tag + b" "):
                    if not line.startswith(tag + b" OK"):
                        raise RuntimeError(f"APPEND refused: {line!r}")
                    break
    finally:
        with contextlib.suppress(Exception):
            m.logout()


def fill_maildir(dc: Dovecot, messages: list[bytes]) -> None:
    """Files written into the user's maildir new/ (tmp/ then rename, owned by the mail user);
    Dovecot indexes them at the next STATUS/SELECT."""
    imap.count(dc, USER, "INBOX")  # a login creates the maildir with the right owner
    box = dc.maildir_root / USER
    uid, gid = mail_ids()
    stamp = int(time.time())
    for n, raw in enumerate(messages):
        name = f"{stamp}.M{n}P{os.getpid()}.bench"
        tmp = box / "tmp" / name
        with open(tmp, "wb") as f:
            f.write(raw)
        os.chown(tmp, uid, gid)
        os.rename(tmp, box / "new" / name)


def fill(dc: Dovecot, messages: list[bytes], how: str) -> float:
    start = time.perf_counter()
    (fill_maildir if how == "maildir" else fill_append)(dc, messages)
    have = imap.count(dc, USER, "INBOX")  # also lets Dovecot index a maildir fill
    elapsed = time.perf_counter() - start
    if have != len(messages):
        raise RuntimeError(f"INBOX holds {have} messages after filling {len(messages)}")
    return elapsed


# --------------------------------------------------------------------------- fetch-only clients


@dataclass
class FetchResult:
    name: str
    rates: list[float] = field(default_factory=list)  # messages/s, one per run
    cpu: list[float] = field(default_factory=list)  # client CPU seconds per message
    error: str = ""

    def line(self) -> str:
        if self.error:
            return f"{self.name:<48} FAILED: {self.error}"
        return (
            f"{self.name:<48} {statistics.median(self.rates):>9,.0f} messages/s  "
            f"({min(self.rates):,.0f} – {max(self.rates):,.0f}; client CPU "
            f"{statistics.median(self.cpu) * 1e6:,.0f} µs/message)"
        )


def _check(got: int, nbytes: int, want: int, want_bytes: int, who: str) -> None:
    if got != want or nbytes != want_bytes:
        raise RuntimeError(f"{who}: {got} messages / {nbytes} bytes, want {want} / {want_bytes}")


def fetch_imaplib(dc: Dovecot, want: int, want_bytes: int, *, tls: bool) -> tuple:
    """UID SEARCH ALL, then UID FETCH BODY.PEEK[] in batches; (seconds, CPU seconds)."""
    m = imap.connect(dc, USER, tls=tls, timeout=COMMAND_TIMEOUT)  # socket timeout per read
    try:
        imap.ok(*m.select("INBOX", readonly=True), "EXAMINE")
        cpu, start = time.process_time(), time.perf_counter()
        typ, data = m.uid("SEARCH", "ALL")
        imap.ok(typ, data, "UID SEARCH")
        uids = (data[0] or b"").split()
        got = nbytes = 0
        for i in range(0, len(uids), FETCH_BATCH):
            typ, data = m.uid(
                "FETCH", b",".join(uids[i : i + FETCH_BATCH]).decode(), "(BODY.PEEK[])"
            )
            imap.ok(typ, data, "UID FETCH")
            for part in data:
                if isinstance(part, tuple):
                    got += 1
                    nbytes += len(part[1])
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        with contextlib.suppress(Exception):
            m.logout()
    _check(got, nbytes, want, want_bytes, "imaplib")
    return elapsed, cpu


_LITERAL_AT_END = re.compile(rb"\{(\d+)\}\s*$")


async def _aio_fetch(dc: Dovecot, batch: int) -> tuple[float, float, int, int]:
    import aioimaplib

    async def timed(awaitable, what: str):
        try:
            response = await asyncio.wait_for(awaitable, COMMAND_TIMEOUT)
        except TimeoutError:
            raise RuntimeError(
                f"aioimaplib: no answer to {what} in {COMMAND_TIMEOUT:g} s"
            ) from None
        if getattr(response, "result", "OK") != "OK":
            raise RuntimeError(
                f"aioimaplib: {what} failed: {response.result} {response.lines[-1:]}"
            )
        return response

    ctx = client_ssl_context(dc.ca_file)
    client = aioimaplib.IMAP4_SSL(dc.host, dc.tls_port, timeout=COMMAND_TIMEOUT, ssl_context=ctx)
    try:
        await timed(client.wait_hello_from_server(), "the greeting")
        await timed(client.login(USER, dc.users[USER]), "LOGIN")
        # SELECT, not EXAMINE: aioimaplib leaves its state at AUTH after EXAMINE and then refuses
        # SEARCH; BODY.PEEK[] marks nothing read either way
        await timed(client.select("INBOX"), "SELECT")
        cpu, start = time.process_time(), time.perf_counter()
        response = await timed(client.uid_search("ALL", charset=None), "UID SEARCH")
        uids: list[bytes] = []
        for line in response.lines[:-1]:
            uids += re.findall(rb"\d+", bytes(line))
        got = nbytes = 0
        for i in range(0, len(uids), batch):
            chunk = b",".join(uids[i : i + batch]).decode()
            response = await timed(client.uid("fetch", chunk, "(BODY.PEEK[])"), "UID FETCH")
            lines = response.lines
            for n, line in enumerate(lines[:-1]):
                found = _LITERAL_AT_END.search(bytes(line)) if b"FETCH" in line[:20] else None
                if found and n + 1 < len(lines):
                    size = len(lines[n + 1])
                    if size != int(found.group(1)):
                        raise RuntimeError(f"aioimaplib: literal of {size}, announced {found[1]}")
                    got += 1
                    nbytes += size
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.logout(), 5)
        transport = getattr(client.protocol, "transport", None)
        if transport is not None:
            transport.close()
    return elapsed, cpu, got, nbytes


def fetch_aioimaplib(dc: Dovecot, want: int, want_bytes: int, *, batch: int) -> tuple:
    elapsed, cpu, got, nbytes = asyncio.run(_aio_fetch(dc, batch))
    _check(got, nbytes, want, want_bytes, "aioimaplib")
    return elapsed, cpu


def fetch_triage(dc: Dovecot, want: int, want_bytes: int, *, password_file: Path) -> tuple:
    """The daemon's own client: ImapSession.unprocessed, then .fetch in the daemon's batches."""
    from triage.config.endpoints import Mailbox, Secret
    from triage.sources.imap import ImapSession

    mb = Mailbox(
        name=USER,
        host=dc.host,
        port=dc.tls_port,
        tls="tls",
        username=USER,
        secret=Secret("file", str(password_file)),
        ca_file=str(dc.ca_file),
        timeout=COMMAND_TIMEOUT,
    )

    async def go() -> tuple[float, float, int, int]:
        session = ImapSession(mb)
        try:
            await session.open()
            cpu, start = time.process_time(), time.perf_counter()
            uids = await session.unprocessed(0)
            got = nbytes = 0
            for i in range(0, len(uids), mb.batch):
                fetched, _left = await session.fetch(uids[i : i + mb.batch], 25 * 1024 * 1024)
                for f in fetched:
                    got += f.raw is not None
                    nbytes += len(f.raw or b"")
            return time.perf_counter() - start, time.process_time() - cpu, got, nbytes
        finally:
            await session.close()

    elapsed, cpu, got, nbytes = asyncio.run(go())
    _check(got, nbytes, want, want_bytes, "triage ImapSession")
    return elapsed, cpu


def fetch_only(dc: Dovecot, messages: list[bytes], runs: int, pw: Path) -> list:
    want, want_bytes = len(messages), sum(map(len, messages))
    clients = [
        ("stdlib imaplib, imaps, batches of 500", fetch_imaplib, {"tls": True}),
        ("stdlib imaplib, plain, batches of 500", fetch_imaplib, {"tls": False}),
        ("aioimaplib 2.0.3, imaps, batches of 100", fetch_aioimaplib, {"batch": 100}),
        ("aioimaplib 2.0.3, imaps, batches of 500", fetch_aioimaplib, {"batch": 500}),
        ("triage ImapSession.fetch, imaps, batches of 100", fetch_triage, {"password_file": pw}),
    ]
    results = []
    for name, func, kwargs in clients:
        result = FetchResult(name)
        for _ in range(runs):
            try:
                elapsed, cpu = func(dc, want, want_bytes, **kwargs)
            except Exception as exc:  # noqa: BLE001 - report it, measure the others
                result.error = f"{type(exc).__name__}: {str(exc)[:200]}"
                break
            result.rates.append(want / elapsed)
            result.cpu.append(cpu / want)
        results.append(result)
        print("  " + result.line(), flush=True)
    return results


# --------------------------------------------------------------------------- memory sampling


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                out += [
                    int(x) for x in Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                ]
    return out


def _status_kb(pid: int, *keys: str) -> dict[str, int]:
    found: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in keys:
                found[name] = int(value.split()[0])
    return found


def _pss_kb(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of `root` and its descendants, living and reaped."""
    total, todo, tick = 0, [root], os.sysconf("SC_CLK_TCK")
    while todo:
        pid = todo.pop()
        fields = procs.proc_fields(pid)
        if fields is not None:
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        todo += _children(pid)
    return total / tick


class Sampler(threading.Thread):
    """VmRSS (and PSS) of a process and all its descendants, every SAMPLE_EVERY seconds."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int, int, int, int]] = []  # t, main, sum, pss sum, procs
        self.seen: dict[int, int] = {}  # every descendant pid seen -> its start time
        self.hwm: dict[int, int] = {}  # pid -> last VmHWM read (kB)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(SAMPLE_EVERY)

    def sample(self) -> None:
        pids, todo = [self.pid], [self.pid]
        while todo:
            kids = _children(todo.pop())
            pids += kids
            todo += kids
        main = total = pss = 0
        for pid in pids:
            st = _status_kb(pid, "VmRSS", "VmHWM")
            if not st:
                continue
            if pid != self.pid and pid not in self.seen:
                self.seen[pid] = procs.starttime(pid) or 0
            self.hwm[pid] = st.get("VmHWM", 0)
            total += st.get("VmRSS", 0)
            pss += _pss_kb(pid)
            if pid == self.pid:
                main = st.get("VmRSS", 0)
        if main:
            self.samples.append((time.perf_counter(), main, total, pss, len(pids)))

    def peaks(self, since: float = 0.0, until: float = float("inf")) -> tuple[int, int, int]:
        """(main, sum, pss sum) peaks in kB over [since, until]."""
        window = [s for s in self.samples if since <= s[0] <= until] or self.samples[-1:]
        if not window:
            return 0, 0, 0
        return max(s[1] for s in window), max(s[2] for s in window), max(s[3] for s in window)

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(5)


class Background:
    """CPU used by processes outside this benchmark's own process tree (other work on the
    machine), in cores on average since `mark()`. Processes that both start and end between two
    snapshots are missed, so this is a lower bound."""

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK")
        self.mark()

    def _snapshot(self) -> dict[tuple[int, int], int]:
        mine = {os.getpid()} | {p for p, _start in procs.descendants(os.getpid())}
        out: dict[tuple[int, int], int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in mine:
                continue
            fields = procs.proc_fields(entry)
            if fields is not None:
                out[(int(entry), int(fields[19]))] = int(fields[11]) + int(fields[12])
        return out

    def _uptime_ticks(self) -> float:
        return float(Path("/proc/uptime").read_text().split()[0]) * self.tick

    def mark(self) -> None:
        self.since, self.boot_ticks, self.before = (
            time.perf_counter(),
            self._uptime_ticks(),
            self._snapshot(),
        )

    def cores(self) -> float:
        after = self._snapshot()
        used = 0
        for key, ticks in after.items():
            if key in self.before:
                used += ticks - self.before[key]
            elif key[1] >= self.boot_ticks:  # started since mark()
                used += ticks
        return used / self.tick / max(1e-9, time.perf_counter() - self.since)


# --------------------------------------------------------------------------- the daemon


class BenchDaemon(Daemon):
    """The harness's `triage run` on the shipped defaults against `dc` over imaps, its memory
    sampled while it runs. `extra`: TOML tables added as they are (bench/graph.py passes no
    server and a `[[mailbox]] kind = "graph"` table)."""

    def __init__(self, folder: Path, dc: Dovecot | None, extra: str = "") -> None:
        super().__init__(folder, dc, quick=False, daemon={"backoff_max_seconds": 5}, extra=extra)
        self.password_file = folder / "pw"
        self.sampler: Sampler | None = None
        self.started = 0.0

    def start(self, **popen: object) -> BenchDaemon:
        self.started = time.perf_counter()
        super().start(**popen)
        assert self.proc is not None
        self.sampler = Sampler(self.proc.pid)
        self.sampler.start()
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; then any worker it left behind (by pid)."""
        if self.sampler is not None:
            self.sampler.stop()
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is None:
            code = super().stop(timeout)
        if self.sampler is not None:
            left = [(p, s) for p, s in self.sampler.seen.items() if procs.alive(p, s)]
            for pid, _start in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.proc = None
        return code

    def log_problems(self) -> tuple[Counter, list[str]]:
        """Warning/error events by name, and the lines of the log that are not JSON (tracebacks)."""
        problems: Counter = Counter()
        for e in self.events():
            if e.get("level") in ("warning", "error", "critical", "exception"):
                problems[(e.get("level"), e.get("event"))] += 1
        other = []
        with contextlib.suppress(OSError):
            other = [
                x for x in self.log.read_text(errors="replace").splitlines() if x and x[0] != "{"
            ]
        return problems, other


def inbox_count(m) -> int:
    typ, data = m.status("INBOX", "(MESSAGES)")
    imap.ok(typ, data, "STATUS")
    return int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))


@dataclass
class Ingest:
    count: int
    fill_seconds: float
    seconds: float = 0.0  # process start -> INBOX empty and every row committed
    first_row: float = 0.0  # process start -> first committed row
    connected: float = 0.0  # process start -> mailbox_state row written (logged in)
    rows: int = 0
    first_rows: int = 0  # rows already committed at first_row
    milestones: dict[int, tuple[float, int, int, int]] = field(default_factory=dict)
    peak: tuple[int, int, int] = (0, 0, 0)  # main, sum, pss sum (kB) while ingesting
    hwm_main: int = 0
    procs: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    folders: dict[str, int] = field(default_factory=dict)
    daemon_cpu: float = 0.0  # seconds, the daemon and its workers, start to INBOX empty
    server_cpu: float = 0.0  # seconds, every Dovecot process, same span

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    @property
    def steady_rate(self) -> float:
        return (self.count - self.first_rows) / max(1e-9, self.seconds - self.first_row)


def ingest(daemon: BenchDaemon, count: int, fill_seconds: float) -> Ingest:
    """Start the daemon and wait until INBOX is empty and `messages` holds `count` rows."""
    result = Ingest(count, fill_seconds)
    db = Database(daemon.db)
    watch = imap.connect(daemon.imap, USER, timeout=COMMAND_TIMEOUT)
    limit = 120 + count / 20  # seconds: a daemon below 20 messages/s is a failure here
    server_before = tree_cpu(daemon.imap.pid or 0)
    try:
        daemon.start()
        start = daemon.started
        marks = {25: count // 4, 50: count // 2, 100: count}
        last_rows, last_change, next_status = 0, start, 0.0
        while True:
            now = time.perf_counter()
            if not daemon.running():
                raise RuntimeError(
                    f"the daemon exited with {daemon.proc.returncode}; see {daemon.log}"
                )
            if now - start > limit:
                raise RuntimeError(
                    f"{last_rows} of {count} rows after {limit:.0f} s; see {daemon.log}"
                )
            if not result.connected and db.scalar("SELECT COUNT(*) FROM mailbox_state"):
                result.connected = now - start
            rows = db.scalar("SELECT COUNT(*) FROM messages") or 0
            if rows and not result.first_row:
                result.first_row, result.first_rows = now - start, rows
            for pct, at in marks.items():
                if rows >= at and pct not in result.milestones:
                    assert daemon.sampler is not None
                    result.milestones[pct] = (now - start, *daemon.sampler.peaks(start, now))
            if rows != last_rows:
                last_rows, last_change = rows, now
            # INBOX is asked only when it may be empty: every row is in, or nothing moves
            if rows >= count or (now - last_change > 3 and now > next_status):
                next_status = now + 1
                if inbox_count(watch) == 0:
                    result.seconds, result.rows = time.perf_counter() - start, rows
                    assert daemon.proc is not None
                    result.daemon_cpu = tree_cpu(daemon.proc.pid)
                    result.server_cpu = tree_cpu(daemon.imap.pid or 0) - server_before
                    break
            time.sleep(POLL_EVERY)
        assert daemon.sampler is not None
        daemon.sampler.sample()
        result.peak = daemon.sampler.peaks(start, time.perf_counter())
        result.hwm_main = daemon.sampler.hwm.get(daemon.sampler.pid, 0)
        result.procs = max((s[4] for s in daemon.sampler.samples), default=0)
        result.actions = dict(db.rows("SELECT action, COUNT(*) FROM messages GROUP BY action"))
    finally:
        db.close()
        with contextlib.suppress(Exception):
            watch.logout()
    result.folders = {f: imap.count(daemon.imap, USER, f) for f in imap.folders(daemon.imap, USER)}
    return result


# --------------------------------------------------------------------------- IDLE latency


def latency_messages(n: int) -> list[tuple[str, bytes]]:
    """n human messages of the same generator, each with a Message-ID of its own."""
    out: list[tuple[str, bytes]] = []
    pool = replay_bench.generate(max(50, n * 3), seed=1234)
    humans = [raw for raw in pool if b"\r\nFrom: User " in raw]
    for i in range(n):
        raw = humans[i % len(humans)]
        mid = f"<latency-{i}.{os.getpid()}@bench.example>"
        raw = re.sub(rb"\r\nMessage-ID: [^\r]*", f"\r\nMessage-ID: {mid}".encode(), raw, count=1)
        out.append((mid, raw))
    return out


@dataclass
class Latency:
    seconds: list[float]
    append_seconds: list[float]
    missed: int
    peak: tuple[int, int, int]
    push: list[float] = field(default_factory=list)  # bare IDLE client: APPEND -> EXISTS
    floor: list[float] = field(default_factory=list)  # bare IDLE client: APPEND -> fetched, moved


def idle_floor(dc: Dovecot, n: int, pause: float, folder: str = "BenchIdle") -> tuple:
    """What any IDLE client gets from this server: a bare imaplib client on a folder of its own
    (the daemon watches INBOX only) doing the daemon's cycle without parsing or storing: IDLE;
    on EXISTS, DONE, UID SEARCH, UID FETCH BODY.PEEK[], UID MOVE; IDLE again; the next APPEND
    after `pause`. Returns ([APPEND -> EXISTS], [APPEND -> moved]) in seconds."""
    imap.create(dc, USER, folder)
    imap.create(dc, USER, folder + ".Done")
    client = imap.connect(dc, USER, timeout=10)
    writer = imap.connect(dc, USER, timeout=COMMAND_TIMEOUT)
    pushed: list[float] = []
    done: list[float] = []
    raws = [raw for _mid, raw in latency_messages(n)]
    try:
        imap.ok(*client.select(folder), "SELECT")
        for k, raw in enumerate(raws):
            tag = f"I{k}".encode()
            client.send(tag + b" IDLE\r\n")
            if not client.readline().startswith(b"+"):
                raise RuntimeError("IDLE refused")
            time.sleep(pause)
            sent = time.perf_counter()
            imap.ok(*writer.append(folder, None, None, raw), "APPEND")
            while not re.match(rb"\* \d+ EXISTS", client.readline()):
                pass
            pushed.append(time.perf_counter() - sent)
            client.send(b"DONE\r\n")
            while not client.readline().startswith(tag + b" "):
                pass
            typ, data = client.uid("SEARCH", "ALL")
            uids = b",".join((data[0] or b"").split()).decode()
            imap.ok(*client.uid("FETCH", uids, "(BODY.PEEK[])"), "UID FETCH")
            imap.ok(*client.uid("MOVE", uids, folder + ".Done"), "UID MOVE")
            done.append(time.perf_counter() - sent)
    finally:
        for m in (client, writer):
            with contextlib.suppress(Exception):
                m.logout()
    return pushed, done


def idle_latency(daemon: BenchDaemon, n: int, pause: float) -> Latency:
    db = Database(daemon.db)
    m = imap.connect(daemon.imap, USER, timeout=COMMAND_TIMEOUT)
    seconds, appends, missed = [], [], 0
    try:
        deadline = time.perf_counter() + 60
        while db.scalar("SELECT state FROM mailbox_state") != "idle":
            if time.perf_counter() > deadline:
                raise RuntimeError("the daemon did not go idle within 60 s")
            time.sleep(0.05)
        time.sleep(0.5)  # let the IDLE command reach the server
        start = time.perf_counter()
        for mid, raw in latency_messages(n):
            if not daemon.running():
                raise RuntimeError(f"the daemon exited; see {daemon.log}")
            sent = time.perf_counter()
            imap.ok(*m.append("INBOX", None, None, raw), "APPEND")
            appended = time.perf_counter()
            while not db.rows("SELECT 1 FROM messages WHERE message_id = ?", mid):
                if time.perf_counter() - sent > 10:
                    missed += 1
                    break
                time.sleep(LATENCY_POLL)
            else:
                seconds.append(time.perf_counter() - sent)
                appends.append(appended - sent)
            time.sleep(pause)
        assert daemon.sampler is not None
        peak = daemon.sampler.peaks(start, time.perf_counter())
    finally:
        db.close()
        with contextlib.suppress(Exception):
            m.logout()
    return Latency(seconds, appends, missed, peak)


# --------------------------------------------------------------------------- the run


def mib(kb: int) -> str:
    return f"{kb / 1024:,.0f} MiB"


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    total = ""
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        total = f", {kb / 1024 / 1024:.0f} GiB"
    return f"{os.cpu_count()} cores ({model or platform.machine()}){total}"


def dovecot_version() -> str:
    try:
        return subprocess.run(
            [find_tool("dovecot") or "dovecot", "--version"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


# bench/replay.py's replay_rate, in a fresh interpreter: its worker pool is then forked from a
# process with nothing else in it (not from this one, with its signal handlers and servers)
_REPLAY_ONE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import replay
import resource
def cpu():
    return sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) for f in ("ru_utime", "ru_stime"))
before = cpu()
rate, counts = replay.replay_rate(replay.Path(sys.argv[2]), replay.Path(sys.argv[3]), int(sys.argv[4]))
print(json.dumps({"rate": rate, "counts": counts, "cpu": cpu() - before}))
"""


def replay_rate(folder: Path, db: Path, count: int) -> tuple[float, dict, float]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _REPLAY_ONE, str(BENCH), str(folder), str(db), str(count)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: it and its workers end together
    )
    try:
        out, err = proc.communicate(timeout=max(300, count / 10))
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"replay failed ({proc.returncode}):\n{err[-2000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    return result["rate"], result["counts"], result["cpu"]


def run_replay(folder: Path, tmp: Path, count: int, runs: int) -> tuple[float, list, dict]:
    rates, cpus, counts = [], [], {}
    for n in range(runs):
        rate, counts, cpu = replay_rate(folder, tmp / f"replay{n}.db", count)
        rates.append(rate)
        cpus.append(cpu)
    last = sqlite3.connect(tmp / f"replay{runs - 1}.db")
    actions = dict(last.execute("SELECT action, COUNT(*) FROM messages GROUP BY action"))
    last.close()
    info = {"summary": counts, "actions": actions, "cpu": statistics.median(cpus)}
    return statistics.median(rates), rates, info


def replay_phase(tmp: Path, messages: list[bytes], runs: int) -> tuple[float, dict]:
    mail = tmp / "mail"
    mail.mkdir()
    for k, raw in enumerate(messages):
        (mail / f"{k:06d}.eml").write_bytes(raw)
    rate, rates, info = run_replay(mail, tmp, len(messages), runs)
    shutil.rmtree(mail)
    print(
        f"replay from files   {rate:,.0f} messages/s (median of {runs}: "
        f"{', '.join(f'{r:,.0f}' for r in rates)}); {info['summary']}",
        flush=True,
    )
    return rate, info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="messages ingested (10,000)")
    parser.add_argument(
        "--rss-counts",
        default="2500,5000",
        help="smaller ingests for the memory-growth check, comma-separated ('' for none)",
    )
    parser.add_argument("--replay-runs", type=int, default=3, help="replay runs (median)")
    parser.add_argument("--fetch-runs", type=int, default=3, help="runs per fetch-only client")
    parser.add_argument("--latency-count", type=int, default=200)
    parser.add_argument("--latency-pause", type=float, default=0.075, help="seconds between")
    parser.add_argument("--fill", choices=("append", "maildir"), default="append")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-fetch-only", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = parser.parse_args()
    reason = skip_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    counts = sorted({int(x) for x in args.rss_counts.split(",") if x.strip()} | {args.count})
    if counts[-1] != args.count:
        parser.error("--rss-counts must be at most --count")
    wall = time.perf_counter()

    main_pid = os.getpid()

    def interrupted(signum: int, _frame: object) -> None:
        if os.getpid() != main_pid:  # a replay worker forked from here: die as by default
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # SIGTERM, and SIGINT even when started in the background (which ignores it), end the run
    # through the finally below, so every server and daemon is stopped
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)

    import aioimaplib  # noqa: F401 - fail early when missing

    messages = replay_bench.generate(args.count)
    size = sum(map(len, messages))
    print(
        f"machine             {machine()}, Python {sys.version.split()[0]}, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    print(f"servers             {dovecot_version()} on 127.0.0.1, imaps (own CA), maildir")
    print(
        f"messages            {args.count:,} from bench/replay.py's generator, mean "
        f"{size / len(messages) / 1024:.1f} KiB ({size / 2**20:,.0f} MiB); INBOX filled by "
        f"{'MULTIAPPEND + LITERAL+ (one connection)' if args.fill == 'append' else 'maildir new/'}"
    )
    print(flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="triage-bench-imap-"))
    os.chmod(tmp, 0o755)  # Dovecot's unprivileged processes traverse it
    dovecots: list[Dovecot] = []
    daemons: list[BenchDaemon] = []
    results: dict[int, Ingest] = {}
    fetch_results: list[FetchResult] = []
    latency: Latency | None = None
    busy: dict[str, float] = {}
    whole, background = Background(), Background()
    code = 0
    try:
        # one Dovecot and one daemon per count, the full count last, right after the replay
        for n in counts:
            full = n == args.count
            if full:  # replay from files, with no server running
                background.mark()
                replay_rate, replay_info = replay_phase(tmp, messages, args.replay_runs)
                busy["replay"] = background.cores()
            dc = Dovecot.start(tmp / f"dovecot-{n}")
            dovecots.append(dc)
            fill_seconds = fill(dc, messages[:n], args.fill)
            print(
                f"\n[{n:,} messages] INBOX filled in {fill_seconds:.2f} s (not timed)", flush=True
            )
            daemon = BenchDaemon(tmp / f"daemon-{n}", dc)
            daemons.append(daemon)
            if full and not args.skip_fetch_only:
                print(f"fetch-only, {n:,} messages, median of {args.fetch_runs}:", flush=True)
                fetch_results = fetch_only(dc, messages[:n], args.fetch_runs, daemon.password_file)
            background.mark()
            result = ingest(daemon, n, fill_seconds)
            busy[f"ingest of {n:,}"] = background.cores()
            results[n] = result
            print(
                f"triage run          {result.rate:,.0f} messages/s ({result.seconds:.2f} s from "
                f"process start; logged in after {result.connected:.2f} s, first row after "
                f"{result.first_row:.2f} s, {result.steady_rate:,.0f} messages/s from there)"
                + ("" if result.rows == n else f" WARNING: {result.rows:,} rows, not {n:,}"),
                flush=True,
            )
            print(
                f"peak RSS            {mib(result.peak[1])} daemon + workers "
                f"({result.procs} processes; PSS {mib(result.peak[2])}), "
                f"main process {mib(result.peak[0])} (VmHWM {mib(result.hwm_main)})",
                flush=True,
            )
            if full and not args.skip_latency:
                latency = idle_latency(daemon, args.latency_count, args.latency_pause)
                print(
                    f"IDLE latency        median {statistics.median(latency.seconds) * 1e3:,.0f} ms,"
                    f" p95 {pct(latency.seconds, 95) * 1e3:,.0f} ms over {len(latency.seconds)}"
                    f" messages ({latency.missed} missed)",
                    flush=True,
                )
                latency.push, latency.floor = idle_floor(
                    dc, min(50, args.latency_count), args.latency_pause
                )
                print(
                    f"IDLE, bare client   median {statistics.median(latency.push) * 1e3:,.0f} ms "
                    f"(p95 {pct(latency.push, 95) * 1e3:,.0f} ms) APPEND -> '* n EXISTS'; median "
                    f"{statistics.median(latency.floor) * 1e3:,.0f} ms (p95 "
                    f"{pct(latency.floor, 95) * 1e3:,.0f} ms) to fetched and moved "
                    f"({len(latency.push)} messages)",
                    flush=True,
                )
            daemon.stop()
            dc.stop()
    except KeyboardInterrupt as exc:
        code = 130
        print(
            f"\ninterrupted ({exc or 'SIGINT'}); stopping the servers and daemons", file=sys.stderr
        )
    except BaseException:
        code = 1
        raise
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):  # a second signal must not cut the cleanup
            signal.signal(sig, signal.SIG_IGN)
        for d in daemons:
            with contextlib.suppress(Exception):
                d.stop()
        for dc in dovecots:
            with contextlib.suppress(Exception):
                dc.cleanup()
        problems_by_run = {d.tmp.name: d.log_problems() for d in daemons}
        if code == 1:
            for d in daemons:
                tail = (
                    d.log.read_text(errors="replace").splitlines()[-15:] if d.log.exists() else []
                )
                print(f"\n{d.log} (last lines):\n" + "\n".join(tail), file=sys.stderr)
        if args.keep or code == 1:
            print(f"\nkept {tmp} (daemon logs, databases)", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    if code:
        return code
    busy["whole run"] = whole.cores()
    report(args, results, fetch_results, latency, replay_rate, replay_info, problems_by_run)
    print(
        "other work on this machine: "
        + ", ".join(f"{k} {v:.2f} cores" for k, v in busy.items())
        + f" busy on average (of {os.cpu_count()}; processes outside this benchmark)"
    )
    if max(busy.values(), default=0) > 0.2:
        print("WARNING: other processes competed for the CPU; the rates above are lower for it")
    print(f"\nrun time            {time.perf_counter() - wall:,.0f} s")
    return code


def _row(label: str, text: str) -> None:
    print(f"{label:<48} {text}")


def report(args, results, fetch_results, latency, replay_rate, replay_info, problems) -> None:
    full = results[args.count]
    print("\n=== summary " + "=" * 60)
    _row("replay from files", f"{replay_rate:>9,.0f} messages/s  (median of {args.replay_runs})")
    for r in fetch_results:
        print(r.line())
    _row("triage run, IMAP ingest", f"{full.rate:>9,.0f} messages/s  ({args.count:,} messages)")
    ratio = full.rate / replay_rate
    _row(
        "IMAP ingest ÷ replay",
        f"{ratio:>9.0%}   (goal >= 85 %: {'met' if ratio >= 0.85 else 'NOT met'}; "
        f"{full.steady_rate / replay_rate:.0%} counting from the daemon's first committed row)",
    )
    # Both sides on the same 2 cores: per message, replay pays parsing and storing; IMAP
    # ingest pays the same plus the server's work and the client's fetching. Even with every
    # core busy all the time, ingest can reach only replay's CPU share of its own.
    per = 1e6 / args.count
    replay_cpu, daemon_cpu, server_cpu = (
        replay_info["cpu"] * per,
        full.daemon_cpu * per,
        full.server_cpu * per,
    )
    _row(
        "CPU per message",
        f"replay {replay_cpu:,.0f} µs (all its processes); IMAP ingest: the daemon and its "
        f"workers {daemon_cpu:,.0f} µs + Dovecot {server_cpu:,.0f} µs = "
        f"{daemon_cpu + server_cpu:,.0f} µs",
    )
    _row(
        "  so at best, cores saturated",
        f"ingest ÷ replay <= {replay_cpu / max(1e-9, daemon_cpu + server_cpu):.0%} "
        f"(measured {ratio:.0%}: {full.rate * (daemon_cpu + server_cpu) / 1e6:.2f} of "
        f"{os.cpu_count()} cores busy while ingesting)",
    )
    same = full.actions == replay_info["actions"]
    _row(
        "decisions (messages.action)",
        f"IMAP {full.actions}; replay {replay_info['actions']} -> {'same' if same else 'DIFFERENT'}",
    )
    _row("server folders after ingest", str(full.folders))
    if latency is not None and latency.seconds:
        p95 = pct(latency.seconds, 95)
        _row(
            "IDLE, APPEND -> committed row",
            f"median {statistics.median(latency.seconds) * 1e3:,.0f} ms, p95 {p95 * 1e3:,.0f} ms, "
            f"min {min(latency.seconds) * 1e3:,.0f} ms, max {max(latency.seconds) * 1e3:,.0f} ms "
            f"over {len(latency.seconds)} (goal p95 < 500 ms: "
            f"{'met' if p95 < 0.5 and not latency.missed else 'NOT met'}; {latency.missed} not "
            f"seen within 10 s; the APPEND itself: median "
            f"{statistics.median(latency.append_seconds) * 1e3:.1f} ms)",
        )
        if latency.push:
            push, floor = statistics.median(latency.push), statistics.median(latency.floor)
            _row(
                "  same cycle, bare imaplib client",
                f"APPEND -> EXISTS median {push * 1e3:,.0f} ms (p95 "
                f"{pct(latency.push, 95) * 1e3:,.0f} ms); -> fetched and moved median "
                f"{floor * 1e3:,.0f} ms (p95 {pct(latency.floor, 95) * 1e3:,.0f} ms)",
            )
            _row(
                "  the daemon's own share",
                f"median {(statistics.median(latency.seconds) - floor) * 1e3:,.0f} ms "
                "(daemon median - bare client median); the rest is the server's IDLE push",
            )
        _row(
            "  memory while idle + latency",
            f"{mib(latency.peak[1])} (main {mib(latency.peak[0])})",
        )
    print("peak RSS while ingesting (daemon + its workers, sampled every 50 ms; VmRSS sum counts")
    print("pages shared after fork once per process, PSS does not):")
    for n, r in sorted(results.items()):
        print(
            f"  {n:>6,} messages                  sum {mib(r.peak[1]):>8}, main {mib(r.peak[0]):>8}"
            f", PSS {mib(r.peak[2]):>8}   ({r.rate:,.0f} messages/s)"
        )
    print(f"  within the {args.count:,} run, peak so far at:")
    for p, (at, main, total, pss) in sorted(full.milestones.items()):
        print(
            f"    {p:>3} % ({at:5.1f} s)                sum {mib(total):>8}, main {mib(main):>8}"
            f", PSS {mib(pss):>8}"
        )
    peak = max(r.peak[1] for r in results.values())
    smallest = results[min(results)].peak[1]
    print(
        f"  goal < 200 MB and flat: peak {peak / 1024:,.0f} MiB "
        f"({peak * 1024 / 1e6:,.0f} MB), largest ÷ smallest count: {peak / max(1, smallest):.2f}x"
    )
    print("daemon log, warnings and errors:")
    any_problem = False
    for run, (counter, other) in problems.items():
        for (level, event), k in sorted(counter.items()):
            any_problem = True
            print(f"  {run}: {level} {event} x{k}")
        if other:
            any_problem = True
            print(f"  {run}: {len(other)} non-JSON lines, first: {other[0][:200]}")
    if not any_problem:
        print("  none")


if __name__ == "__main__":
    sys.exit(main())
