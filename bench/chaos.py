"""Chaos soak: `triage run` against a private Dovecot and an SMTP sink while everything breaks.

A feeder thread APPENDs a generated mix (bench/replay.py's `generate()`: new human requests,
replies to earlier ones, DSN bounces, auto-replies, list mail; plus a few senders who write so
often that the per-address acknowledgement limit must suppress some) to INBOX in bursts while
the daemon runs. Meanwhile, at seeded random moments:

  * the daemon's main process is SIGKILLed and restarted after a short pause: a third of the
    kills at a random moment, a third the instant a batch is committed (before the server
    hears of it), a third the instant the SMTP server accepts an acknowledgement (before the
    row is marked sent);
  * Dovecot is restarted, every other time after a crash (master and sessions SIGKILLed);
  * the SMTP server goes away for a stretch and comes back on the same port.

Then nothing breaks any more: the backlog must clear, and a few last bursts, each with one
message arriving while the others are handled, must each leave INBOX empty within seconds.
Once the outbox has drained, the daemon is stopped with SIGTERM and everything is checked:

  * every message is stored once (messages rows == appended, each Message-ID once);
  * every new human message is exactly one ticket, every reply one append to the ticket its
    conversation started, every robot message (bounce, auto-reply, list) one filtered row with
    one `filtered` event; nothing quarantined;
  * INBOX is empty, Triage.Processed holds exactly the human messages and Triage.Filtered the
    robot ones, each once; Triage.Errors is empty;
  * every ticket's acknowledgement was sent exactly once (its outbox row `sent`) or, past the
    limit of 5 a day for its sender, recorded as suppressed (`auto_reply_suppressed` event, no
    outbox row); the SMTP sink received exactly the sent rows' Message-IDs. A SIGKILL (or the
    sink going away) after the server accepted a message but before the row was marked `sent`
    re-sends it with the same Message-ID: those repeats are allowed (documented at-least-once
    delivery) and counted separately; two different acknowledgements for one ticket are not.

It prints the counts and PASS, or FAIL with every difference, and exits non-zero on FAIL.

    .venv/bin/python bench/chaos.py            # 2,000 messages, 30 kills, 5 restarts, 5 outages
    .venv/bin/python bench/chaos.py --short    # 200 messages, 5 kills, 1 restart, 1 outage
    .venv/bin/python bench/chaos.py --seed 42 --keep   # reproduce a run; keep its folder
    .venv/bin/python bench/chaos.py --postgres  # the failover soak: bench/failover.py

Needs root and Debian's dovecot-imapd, like the tests that use tests/support/dovecot.py.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import imaplib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import replay as replay_bench  # noqa: E402

from tests.support import imap, procs  # noqa: E402
from tests.support.daemon import Daemon, Database  # noqa: E402
from tests.support.dovecot import Dovecot  # noqa: E402
from tests.support.dovecot import skip_reason as dovecot_skip_reason  # noqa: E402
from tests.support.http_receiver import HttpReceiver, Reply  # noqa: E402
from tests.support.smtp_sink import SmtpSink  # noqa: E402
from tests.support.smtp_sink import skip_reason as smtp_skip_reason  # noqa: E402

USER = "support"
HUMAN = ("new", "reply")
ROBOT = ("bounce", "auto-reply", "list")
KINDS = (*HUMAN, *ROBOT)
FOLDERS = {
    "processed": "Triage.Processed",
    "filtered": "Triage.Filtered",
    "errors": "Triage.Errors",
}


@dataclass(frozen=True)
class Plan:
    """How much chaos, and how long everything may take."""

    name: str
    count: int
    kills: int
    restarts: int
    outages: int
    feed_seconds: float  # the feeder spreads its bursts over this long
    quiet_bursts: int  # then, with nothing broken any more, this many bursts
    quiet_size: int  # of this many messages, each waited for
    burst: int  # largest burst the feeder appends at once
    outage_seconds: tuple[float, float]  # SMTP outage length, min and max
    outage_window: float  # outages fall in this first fraction of the chaos phase
    pause_seconds: tuple[float, float]  # daemon down after a kill, min and max
    time_limit: float  # the whole run, setup to verdict


# The short run's outage comes early: while the server is away the daemon's outbox rounds back
# off (up to backoff_max_seconds), and the run waits for the rows to go once it is back.
SHORT = Plan(
    name="short",
    count=200,
    kills=5,
    restarts=1,
    outages=1,
    feed_seconds=8.0,
    quiet_bursts=4,
    quiet_size=10,
    burst=15,
    outage_seconds=(1.5, 2.5),
    outage_window=0.3,
    pause_seconds=(0.05, 0.6),
    time_limit=100.0,
)
LONG = Plan(
    name="long",
    count=2000,
    kills=30,
    restarts=5,
    outages=5,
    feed_seconds=100.0,
    quiet_bursts=10,
    quiet_size=20,
    burst=40,
    outage_seconds=(3.0, 12.0),
    outage_window=1.0,
    pause_seconds=(0.05, 1.5),
    time_limit=1500.0,
)


# --------------------------------------------------------------------------- the messages


@dataclass(frozen=True)
class Item:
    """One generated message and what must become of it."""

    n: int
    raw: bytes
    message_id: str
    kind: str  # new | reply | bounce | auto-reply | list
    parent: str | None  # In-Reply-To of a reply
    root: str  # the message that opened the conversation (itself unless a reply)
    ack: bool = False  # a new request whose acknowledgement must be sent (else suppressed)


def _header(raw: bytes, name: str) -> str | None:
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    found = re.search(rb"^" + name.encode() + rb": *(.*)$", head, re.MULTILINE | re.IGNORECASE)
    return found.group(1).decode().strip() if found else None


def _kind(raw: bytes) -> str:
    head = raw.split(b"\r\n\r\n", 1)[0].lower()
    if b"report-type=delivery-status" in head:
        return "bounce"
    if b"\nauto-submitted: auto-replied" in head:
        return "auto-reply"
    if b"\nlist-id:" in head:
        return "list"
    return "reply" if b"\nin-reply-to:" in head else "new"


ACKS_PER_DAY = 5  # [replies] max_per_day, the default: per address, in any 24 hours


def _written_by(raw: bytes, address: str) -> bytes:
    """`raw` from `address`, with the receiving server's results for its domain to match."""
    domain = address.rpartition("@")[2]
    raw = re.sub(
        rb"^From: .*$",
        f"From: Frequent Writer <{address}>\r".encode(),
        raw,
        count=1,
        flags=re.MULTILINE,
    )
    return re.sub(
        rb"^Authentication-Results: .*$",
        f"Authentication-Results: mx.msp.example; dkim=pass header.d={domain}; spf=pass "
        f"smtp.mailfrom={domain}; dmarc=pass header.from={domain}\r".encode(),
        raw,
        count=1,
        flags=re.MULTILINE,
    )


def messages(count: int, seed: int) -> list[Item]:
    """bench/replay.py's mix, each message with its expected class and conversation root.

    A few senders write many new requests (8 + count/100 each, one sender per 400 messages):
    past the rate limit their acknowledgements must be suppressed, and recorded as such.
    """
    rng = random.Random(seed + 1)
    raws = replay_bench.generate(count, seed)
    new = [n for n, raw in enumerate(raws) if _kind(raw) == "new"]
    per_sender = min(8 + count // 100, len(new) // max(1, count // 400))
    chosen = rng.sample(new, per_sender * max(1, count // 400))
    writer_of: dict[str, str] = {}  # conversation root -> the frequent writer who opened it
    for k, n in enumerate(chosen):
        writer = f"often{k % max(1, count // 400)}@acme.example"
        writer_of[_header(raws[n], "Message-ID") or ""] = writer
        raws[n] = _written_by(raws[n], writer)
    items: list[Item] = []
    root_of: dict[str, str] = {}
    acks: Counter[str] = Counter()
    for n, raw in enumerate(raws):
        mid = _header(raw, "Message-ID")
        if mid is None or mid in root_of:
            raise RuntimeError(f"generated message {n} has no or a repeated Message-ID: {mid}")
        kind = _kind(raw)
        parent = _header(raw, "In-Reply-To") if kind == "reply" else None
        if parent is not None and parent not in root_of:
            raise RuntimeError(f"generated reply {n} answers {parent}, not an earlier message")
        root = root_of[parent] if parent is not None else mid
        root_of[mid] = root
        if kind == "reply" and root in writer_of:  # the writer answers in their own conversation
            raw = raws[n] = _written_by(raw, writer_of[root])
        ack = False
        if kind == "new":
            sender = parseaddr(_header(raw, "From") or "")[1].lower()
            acks[sender] += 1
            ack = acks[sender] <= ACKS_PER_DAY
        items.append(Item(n, raw, mid, kind, parent, root, ack))
    return items


# --------------------------------------------------------------------------- processes


class SoakDaemon(Daemon):
    """The harness's daemon in its own session, counting what a soak reports: its starts,
    the exits it made by itself, and processes that outlived a killed daemon."""

    def __init__(self, tmp: Path, dc: Dovecot, smtp_port: int, hook: Hook) -> None:
        super().__init__(
            tmp,
            dc,
            quick=False,
            own_session=True,  # what systemd's cgroup is to the service
            mailbox={"poll_seconds": 1, "timeout": 10, "batch": 25},
            daemon={
                "message_timeout": 30,
                "alert_after_failures": 1000,
                "backoff_max_seconds": 1,
                "sla_check_seconds": 60,
                "outbox_seconds": 1,
            },
            extra=(
                '[identity]\ndomains = ["msp.example"]\nsupport_address = "support@msp.example"\n'
                f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\ntls = "none"\n'
                "allow_insecure = true\ntimeout = 5\n" + hook.table(tmp)
            ),
        )
        self.starts = 0
        self.killed: list[int] = []  # sessions of daemons that were killed or stopped
        self.orphans = 0  # processes still in such a session seconds after its daemon ended
        self.exits: list[int] = []  # statuses of daemons that ended by themselves

    def start(self, **popen: object) -> SoakDaemon:
        super().start(**popen)
        self.starts += 1
        return self

    def kill(self) -> None:
        """SIGKILL the main process only, as the OOM killer or `kill -9 $MAINPID` would."""
        if self.proc is None:
            return
        if self.proc.poll() is not None:  # it was already gone: not our doing
            self.exits.append(self.proc.returncode)
        super().kill()
        self.killed = [g for g in self.killed if procs.session_members(g, str(self.config))]
        self.killed.append(self.proc.pid)
        self.proc = None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, as systemd stops it; the exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        pid = self.proc.pid
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            Daemon.kill(self)  # not this class's kill: this is no crash to count
            rc = None
        self.killed.append(pid)
        self.proc = None
        return rc

    def reap(self, grace: float) -> None:
        """Wait up to `grace` for what the dead daemons left in their sessions (parse workers) to
        end by themselves; count and SIGKILL what is still there, as systemd would. Only
        processes running our command line are touched: a session id can be reused."""
        ours = str(self.config)
        deadline = time.monotonic() + grace
        while any(procs.session_members(g, ours) for g in self.killed):
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        for sid in self.killed:
            for pid in procs.session_members(sid, ours):
                self.orphans += 1
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.killed = [g for g in self.killed if procs.session_members(g, ours)]


class Sinks:
    """The SMTP server: an SmtpSink that can go away and come back on the same port.

    Each comeback is a fresh SmtpSink (its own folder) on the old port: SmtpSink.restart()
    reuses the folder and numbers files from 1 again, overwriting what it had received.
    """

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.all: list[SmtpSink] = [SmtpSink.start(tmp)]
        self.port = self.all[0].port
        self.up = True
        self.down_seconds = 0.0
        self._down_at = 0.0

    def down(self) -> None:
        self.all[-1].stop()
        self.up = False
        self._down_at = time.monotonic()

    def back(self) -> None:
        if not self.up:
            self.all.append(SmtpSink.start(self.tmp, port=self.port))
            self.up = True
            self.down_seconds += time.monotonic() - self._down_at

    def messages(self) -> list[tuple[str, list[str], bytes]]:
        return [m for sink in self.all for m in sink.messages()]

    def next_file(self) -> Path | None:
        """The file the next accepted message will complete (None while the server is away)."""
        if not self.up:
            return None
        folder = self.all[-1].folder / "messages"
        return folder / f"{len(list(folder.glob('*.json'))) + 1}.json"

    def stop(self) -> None:
        for sink in self.all:
            with contextlib.suppress(Exception):
                sink.stop()


HOOK_SECRET = "whsec_" + "Y2hhb3Mtc29hay13ZWJob29rLXNlY3JldC0wMDE="  # this soak only


class Hook:
    """A webhook receiver for ticket.created that can fail: during an outage it answers
    503 with Retry-After: 1, or (every other outage) closes the connection unanswered. It
    records which delivery id it answered 2xx, so a delivery taken twice is seen."""

    def __init__(self) -> None:
        self.rx = HttpReceiver.start(secret=HOOK_SECRET)
        self.accepted: list[str] = []  # webhook-id of each request answered 2xx
        self.outages = 0
        self._answer = self.rx.server.handle
        self.rx.server.handle = self._handle

    def _handle(self, request):
        reply = self._answer(request)
        if reply.kind == "status" and 200 <= reply.code < 300:
            self.accepted.append(request.headers.get("webhook-id", ""))
        return reply

    def table(self, tmp: Path) -> str:
        secret = tmp / "hook.secret"
        secret.write_text(HOOK_SECRET + "\n")
        secret.chmod(0o600)
        return (
            f'[[sink]]\nname = "hook"\nkind = "webhook"\nurl = "{self.rx.url}"\n'
            f'secret_file = "{secret}"\nallow_insecure = true\ntimeout = 5\n'
            'events = ["ticket.created"]\n'
        )

    def down(self) -> None:
        self.outages += 1
        failing = (
            Reply.status(503, "maintenance", retry_after="1") if self.outages % 2 else Reply.close()
        )
        self.rx.always(failing)

    def back(self) -> None:
        self.rx.always(Reply.status(204))

    def stop(self) -> None:
        self.rx.stop()


class Feeder(threading.Thread):
    """Appends `items` in bursts spread over `seconds`, in order, each exactly once."""

    def __init__(
        self,
        dc: Dovecot,
        items: list[Item],
        seconds: float,
        burst: int,
        rng: random.Random,
        lock: threading.Lock,
        stop: threading.Event,
    ) -> None:
        super().__init__(name="feeder", daemon=True)
        self.dc, self.items, self.lock, self.halt = dc, items, lock, stop
        self.appended = 0
        self.retries = 0
        self.error: str | None = None
        # burst k starts at seconds * k / bursts; its messages go one after the other
        self.due: list[float] = []
        sizes: list[int] = []
        while sum(sizes) < len(items):
            sizes.append(min(rng.randint(1, burst), len(items) - sum(sizes)))
        for k, size in enumerate(sizes):
            self.due.extend([seconds * k / len(sizes)] * size)

    def run(self) -> None:
        start = time.monotonic()
        try:
            for item, due in zip(self.items, self.due, strict=True):
                while time.monotonic() < start + due:
                    if self.halt.wait(min(0.05, start + due - time.monotonic())):
                        return
                if self.halt.is_set():
                    return
                with self.lock:  # never while Dovecot restarts: an APPEND cut off is ambiguous
                    self.append(item)
        except Exception as exc:  # noqa: BLE001 - reported as a difference, not a traceback
            self.error = f"{type(exc).__name__}: {exc}"

    def append(self, item: Item) -> None:
        self.retries += append_once(self.dc, item)
        self.appended += 1


def append_once(dc: Dovecot, item: Item, user: str = USER) -> int:
    """APPEND `item` to `user`'s INBOX exactly once, trying again for 30 s; the retries."""
    deadline = time.monotonic() + 30
    retries = 0
    while True:
        try:
            imap.append(dc, user, "INBOX", item.raw)
            return retries
        except (OSError, imaplib.IMAP4.error, RuntimeError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot append message {item.n}: {exc}") from None
            retries += 1
            time.sleep(0.2)
            # the APPEND may have landed before the connection broke: never twice
            with contextlib.suppress(Exception):
                if landed(dc, item.message_id, user):
                    return retries


def landed(dc: Dovecot, message_id: str, user: str = USER) -> bool:
    """True when `message_id` is in `user`'s INBOX or one of the folders it is filed in."""
    with imap.session(dc, user) as m:
        for folder in ("INBOX", *FOLDERS.values()):
            typ, _ = m.select(imap.quote(folder), readonly=True)
            if typ != "OK":
                continue
            typ, data = m.uid("SEARCH", "HEADER", "Message-ID", f'"{message_id}"')
            if typ == "OK" and data and data[0] and data[0].split():
                return True
    return False


def folder_ids(dc: Dovecot, folder: str) -> list[str]:
    """The Message-ID of every message in `folder` (repeats kept)."""
    out = []
    with imap.session(dc, USER) as m:
        typ, _ = m.select(imap.quote(folder), readonly=True)
        if typ != "OK":
            return []
        typ, data = m.uid("SEARCH", "ALL")
        if typ != "OK" or not data or not data[0]:
            return []
        typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        for part in data:
            if isinstance(part, tuple):
                found = re.search(rb"<[^>]*>", part[1] or b"")
                out.append(found.group(0).decode() if found else "(none)")
    return out


# --------------------------------------------------------------------------- the run


def _schedule(plan: Plan, rng: random.Random, start: float, end: float) -> list[tuple[float, str]]:
    """(seconds after the daemon's first start, what): kills and restarts spread over the
    window one per slot, outages one per slot, never overlapping."""
    events: list[tuple[float, str]] = []
    span = end - start
    modes = [KILL_MODES[k % len(KILL_MODES)] for k in range(plan.kills)]
    rng.shuffle(modes)
    for k, mode in enumerate(modes):
        events.append((start + span * (k + rng.random()) / plan.kills, f"kill:{mode}"))
    for k in range(plan.restarts):
        events.append((start + span * (k + rng.random()) / plan.restarts, "restart"))
    lo, hi = plan.outage_seconds
    for k in range(plan.outages):
        slot = max(span * plan.outage_window / plan.outages, hi)
        length = rng.uniform(lo, hi)
        at = start + slot * k + rng.uniform(0, max(0.0, slot - length))
        events += [(at, "smtp_down"), (at + min(length, slot), "smtp_up")]
    return sorted(events)


BACKLOG_SECONDS = 60.0  # once the chaos ends, what was appended is handled within this
PROBE_SECONDS = 5.0  # a quiet burst is handled within this (IDLE, or the poll every second)


def _until(predicate, seconds: float, what: str, diff) -> bool:
    """Poll `predicate` for up to `seconds`; on a timeout record a difference, return False."""
    end = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > end:
            diff(f"waited {seconds:g} s for {what}, with nothing broken")
            return False
        time.sleep(0.05)
    return True


# When a kill falls: at its random moment; or from then, the instant the daemon commits a
# batch (the window before the server hears of it: the re-fetch must be a no-op); or the
# instant the SMTP server accepts an acknowledgement (the window before the row is marked
# sent: the documented at-least-once repeat).
KILL_MODES = ("random", "commit", "accepted")


def _moment(mode: str, db: Db, sinks: Sinks, timeout: float = 2.0) -> bool:
    """Wait (up to `timeout`) for the moment `mode` names; False when it did not come."""
    if mode == "commit":
        before = db.last_message()
        probe = lambda: db.last_message() != before  # noqa: E731
    elif mode == "accepted":
        target = sinks.next_file()
        probe = lambda: target is not None and target.exists()  # noqa: E731
    else:
        return True
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if probe():
            return True
        time.sleep(0.0005)
    return False


class Db(Database):
    """The harness's read-only view of the daemon's database, with what the soak polls."""

    def last_message(self) -> int:
        """The highest messages.id (cheap enough to poll every millisecond)."""
        return self.scalar("SELECT MAX(id) FROM messages")

    def wait_state(self, state: str, seconds: float) -> bool:
        """Until the mailbox's state (mailbox_state.state) is `state`, polled every ms."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.rows("SELECT state FROM mailbox_state")[:1] == [(state,)]:
                return True
            time.sleep(0.001)
        return False

    def scalar(self, sql: str, *args: object, default: object = 0) -> int:
        """As the harness's, with NULL (an aggregate over no rows) read as 0."""
        value = super().scalar(sql, *args, default=default)
        return 0 if value is None else value


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.differences

    def text(self) -> str:
        verdict = ["PASS"] if self.passed else ["FAIL", *(f"  - {d}" for d in self.differences)]
        return "\n".join([*self.lines, *verdict])


MAIL_LOG = """mail_plugins = $mail_plugins mail_log notify
plugin {
  mail_log_events = save copy expunge flag_change
  mail_log_fields = uid box msgid
}
"""


def run(
    plan: Plan, seed: int, keep: bool = False, progress=print, mail_log: bool = False
) -> Report:
    """The soak; returns the report (never raises for a failed check)."""
    started = time.monotonic()
    deadline = started + plan.time_limit
    rng = random.Random(seed)
    items = messages(plan.count, seed)
    tmp = Path(tempfile.mkdtemp(prefix="triage-chaos-"))
    report = Report()
    diff = report.differences.append
    dc: Dovecot | None = None
    sinks: Sinks | None = None
    hook: Hook | None = None
    daemon: SoakDaemon | None = None
    db: Db | None = None
    halt = threading.Event()
    feeder: Feeder | None = None
    chaos = Counter()
    final_rc: int | None = None
    try:
        dc = Dovecot.start(tmp / "dovecot")
        if mail_log:  # Dovecot logs every save, copy and expunge, with UID and Message-ID
            with dc.config_path.open("a") as conf:
                conf.write(MAIL_LOG)
            dc.restart()
        sinks = Sinks(tmp)
        db = Db(tmp / "triage.db")
        hook = Hook()
        daemon = SoakDaemon(tmp, dc, sinks.port, hook)
        imap_lock = threading.Lock()
        noisy = items[: len(items) - plan.quiet_bursts * plan.quiet_size]
        feeder = Feeder(dc, noisy, plan.feed_seconds, plan.burst, rng, imap_lock, halt)
        events = _schedule(plan, rng, 0.3, plan.feed_seconds)
        progress(
            f"chaos soak ({plan.name}): seed {seed}, {plan.count:,} messages, {plan.kills} kills, "
            f"{plan.restarts} Dovecot restarts, {plan.outages} SMTP outages; folder {tmp}"
        )
        daemon.start()
        t0 = time.monotonic()
        feeder.start()
        next_note = t0 + 15
        for at, what in events:
            while time.monotonic() < t0 + at:
                time.sleep(min(0.02, max(0.0, t0 + at - time.monotonic())))
                if time.monotonic() > next_note:
                    next_note += 15
                    progress(_progress(t0, feeder, db, chaos))
            if time.monotonic() > deadline:
                raise TimeoutError("the chaos phase overran the time limit")
            if what.startswith("kill"):
                mode = what.partition(":")[2]
                if mode and not _moment(mode, db, sinks):
                    chaos[f"{what}:missed"] += 1
                daemon.kill()
                chaos[what] += 1
                what = "kill"
                time.sleep(rng.uniform(*plan.pause_seconds))
                daemon.start()
            elif what == "restart":
                with imap_lock:
                    if chaos["restart"] % 2 == 0:
                        dc.kill()  # a crash: master and sessions SIGKILLed, then a fresh start
                        chaos["crash"] += 1
                    dc.restart()
            elif what == "smtp_down":  # the relay and the webhook's receiver fail together
                sinks.down()
                hook.down()
            elif what == "smtp_up":
                sinks.back()
                hook.back()
            chaos[what] += 1
        sinks.back()
        hook.back()
        if not daemon.running():
            daemon.kill()  # records its exit status
            daemon.start()
        feeder.join(max(1.0, deadline - time.monotonic()))
        if feeder.is_alive():
            raise TimeoutError("the feeder overran the time limit")

        # Quiet: nothing breaks any more. The backlog clears; then the last messages come in
        # small bursts, and after each INBOX must empty promptly: mail left there waits for
        # the next arrival (an IDLE that was never told of it), which chaos would hide.
        def caught_up() -> bool:
            return db.scalar("SELECT COUNT(*) FROM messages") >= feeder.appended and (
                imap.count(dc, USER, "INBOX") == 0
            )

        _until(caught_up, BACKLOG_SECONDS, "the backlog to clear after the chaos", diff)
        latencies = []
        for k, start in enumerate(range(len(noisy), len(items), plan.quiet_size)):
            burst = items[start : start + plan.quiet_size]
            for item in burst[:-1]:
                feeder.append(item)
            # the last one comes while the others are handled (announced with the answer to
            # some other command than IDLE)
            db.wait_state("fetching", 3.0)
            feeder.append(burst[-1])
            fed = time.monotonic()
            _until(caught_up, PROBE_SECONDS, f"INBOX to empty after quiet burst {k}", diff)
            latencies.append(time.monotonic() - fed)
        chaos["quiet_bursts"] = len(latencies)
        chaos["quiet_worst"] = round(max(latencies, default=0.0), 1)

        # Then the outbox drains (deferred rows wait out their backoff, up to RETRY_MAX in
        # theory, far less here).
        def settled() -> bool:
            return (
                db.scalar("SELECT COUNT(*) FROM messages") >= len(items)
                and db.scalar("SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'sending')")
                == 0
                and db.scalar(
                    "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'sending')"
                )
                == 0
                and imap.count(dc, USER, "INBOX") == 0
            )

        while not settled():
            if time.monotonic() > deadline:
                diff(f"not settled within the time limit of {plan.time_limit:g} s")
                break
            if not daemon.running():
                daemon.kill()  # records its exit status
                daemon.start()
            if time.monotonic() > next_note:
                next_note += 15
                progress(_progress(t0, feeder, db, chaos))
            time.sleep(0.25)
        final_rc = daemon.stop()
        daemon.reap(grace=5.0)
        report.lines += _check(plan, items, dc, sinks, daemon, db, feeder, chaos, diff)
        report.lines += _check_hook(hook, db, diff)
        if final_rc != 0:
            diff(f"the final SIGTERM stop exited with {final_rc}, expected 0")
    except Exception as exc:  # noqa: BLE001 - a broken harness is a FAIL with its reason
        diff(f"harness error: {type(exc).__name__}: {exc}")
    finally:
        halt.set()
        if feeder is not None and feeder.is_alive():
            feeder.join(10)
        if daemon is not None:
            if daemon.running():
                daemon.kill()
            daemon.reap(grace=0.0)
        if db is not None:
            db.close()
        if sinks is not None:
            sinks.stop()
        if hook is not None:
            hook.stop()
        if dc is not None:
            dc.stop()
            if keep or not report.passed:  # the mailboxes, for a look at what went wrong
                with contextlib.suppress(OSError):
                    shutil.copytree(dc.maildir_root, tmp / "maildir", symlinks=True)
            dc.cleanup()
        if keep or not report.passed:
            report.lines.append(f"kept          {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report.lines.append(f"seed          {seed}")
    report.lines.append(f"elapsed       {time.monotonic() - started:.1f} s")
    return report


SENT = "SELECT COUNT(*) FROM outbox WHERE status = 'sent'"


def _progress(t0: float, feeder: Feeder, db: Db, chaos: Counter) -> str:
    return (
        f"  t={time.monotonic() - t0:5.0f}s appended {feeder.appended:,}, stored "
        f"{db.scalar('SELECT COUNT(*) FROM messages'):,}, acks sent "
        f"{db.scalar(SENT):,}, kills "
        f"{chaos['kill']}, restarts {chaos['restart']}, outages {chaos['smtp_down']}"
    )


def _refiled(twice: list[str], logged: list[dict]) -> str:
    """How messages came to be filed twice, from the daemon's log: a message is logged as
    triaged only after the server answered its MOVE; seen again later under the same UID, the
    server had answered OK and left it in INBOX all the same."""
    answered = 0
    for mid in twice:
        lines = [
            e for e in logged if e.get("event") == "message_triaged" and e.get("message_id") == mid
        ]
        first = [e["source"] for e in lines if e.get("action") != "duplicate"]
        again = [e["source"] for e in lines if e.get("action") == "duplicate"]
        answered += bool(first) and first[0] in again
    return (
        f"of the {len(twice)} message(s) filed twice, {answered} had been moved (UID MOVE answered"
        f" OK, then logged) and were found in INBOX again under the same UID, so filed again"
    )


def _check(plan, items, dc, sinks, daemon, db, feeder, chaos, diff) -> list[str]:
    """Compare everything with what the generated messages say must be; the printed counts."""
    by_kind = Counter(i.kind for i in items)
    n_human = by_kind["new"] + by_kind["reply"]
    n_robot = len(items) - n_human
    if feeder.error:
        diff(f"feeder: {feeder.error}")
    if feeder.appended != len(items):
        diff(f"appended {feeder.appended} of {len(items)} messages")

    # -- the database: one row per message, the right action and ticket
    rows = db.rows(
        "SELECT m.message_id, m.message_key, m.action, m.reason, m.ticket_id, t.message_key"
        " FROM messages m LEFT JOIN tickets t ON t.id = m.ticket_id"
    )
    per_mid = Counter(r[0] for r in rows)
    got = {r[0]: r for r in rows}
    twice = [m for m, c in per_mid.items() if c > 1]
    if twice:
        diff(f"{len(twice)} Message-ID(s) stored more than once, e.g. {twice[:3]}")
    if len(rows) != len(items):
        diff(f"messages table has {len(rows)} rows, expected {len(items)}")
    expected_ids = {i.message_id for i in items}
    extra = [m for m in per_mid if m not in expected_ids]
    if extra:
        diff(f"{len(extra)} stored message(s) that were never appended, e.g. {extra[:3]}")
    wrong: list[str] = []
    for item in items:
        row = got.get(item.message_id)
        if row is None:
            wrong.append(f"{item.message_id} ({item.kind}) not stored")
            continue
        _mid, _key, action, reason, _tid, ticket_key = row
        want = {"new": "ticket", "reply": "append"}.get(item.kind, "filtered")
        if action != want:
            wrong.append(f"{item.message_id} ({item.kind}) is {action} ({reason}), not {want}")
        elif item.kind in HUMAN and ticket_key != item.root:
            wrong.append(
                f"{item.message_id} ({item.kind}) is on the ticket of {ticket_key}, not {item.root}"
            )
    for w in wrong[:10]:
        diff(w)
    if len(wrong) > 10:
        diff(f"... and {len(wrong) - 10} more messages with the wrong outcome")
    actions = Counter(r[2] for r in rows)
    tickets = db.scalar("SELECT COUNT(*) FROM tickets")
    ticket_keys = db.scalar("SELECT COUNT(DISTINCT message_key) FROM tickets")
    if tickets != by_kind["new"] or ticket_keys != tickets:
        diff(
            f"{tickets} tickets ({ticket_keys} distinct opening messages), "
            f"expected {by_kind['new']} new human messages"
        )
    filtered_events = Counter(
        k for (k,) in db.rows("SELECT message_key FROM events WHERE kind = 'filtered'")
    )
    robots = {i.message_id for i in items if i.kind in ROBOT}
    if set(filtered_events) != robots or any(c != 1 for c in filtered_events.values()):
        diff(
            f"{sum(filtered_events.values())} filtered events for {len(filtered_events)} messages,"
            f" expected one for each of the {len(robots)} robot messages"
        )
    if actions["quarantined"]:
        diff(f"{actions['quarantined']} message(s) quarantined, expected 0")

    # -- the mailbox: INBOX empty, each message in the folder of its outcome, once
    inbox = imap.count(dc, USER, "INBOX")
    if inbox:
        diff(f"INBOX holds {inbox} message(s), expected 0")
    in_folder = {name: folder_ids(dc, folder) for name, folder in FOLDERS.items()}
    humans = {i.message_id for i in items if i.kind in HUMAN}
    for name, want in (("processed", humans), ("filtered", robots), ("errors", set())):
        ids = in_folder[name]
        dupes = len(ids) - len(set(ids))
        if dupes or set(ids) != want:
            twice = sorted(m for m, c in Counter(ids).items() if c > 1)
            diff(
                f"{FOLDERS[name]} holds {len(ids)} message(s) ({dupes} repeated, "
                f"{len(set(ids) - want)} unexpected, {len(want - set(ids))} missing), "
                f"expected {len(want)}" + (f"; repeated: {', '.join(twice[:5])}" if twice else "")
            )
            if twice:
                diff(_refiled(twice, daemon.events()))

    # -- acknowledgements: one per ticket, sent or suppressed; the sink saw each sent one
    outbox = db.rows("SELECT ticket_id, status, message_id, to_addr FROM outbox")
    status = Counter(r[1] for r in outbox)
    alerts = [r for r in outbox if r[0] is None]
    if alerts:
        diff(f"{len(alerts)} operator alert(s) in the outbox (a mailbox was declared failing)")
    per_ticket = Counter(r[0] for r in outbox if r[0] is not None)
    suppressed = {
        t for (t,) in db.rows("SELECT ticket_id FROM events WHERE kind = 'auto_reply_suppressed'")
    }
    ticket_of = dict(db.rows("SELECT message_key, id FROM tickets"))
    ticket_ids = set(ticket_of.values())
    sent_rows = {r[2]: r for r in outbox if r[1] == "sent" and r[0] is not None}
    bad_acks = []
    for item in items:
        t = ticket_of.get(item.message_id)
        if t is None:
            continue  # reported above
        n, quiet = per_ticket.get(t, 0), t in suppressed
        if item.ack and (n != 1 or quiet):
            bad_acks.append(f"ticket of {item.message_id}: {n} outbox row(s), suppressed {quiet}")
        elif not item.ack and (n != 0 or not quiet):
            bad_acks.append(
                f"ticket of {item.message_id}: {n} outbox row(s), suppressed {quiet}; "
                f"its sender is over the limit of {ACKS_PER_DAY} acknowledgements a day"
            )
    for b in bad_acks[:10]:
        diff(b)
    if len(bad_acks) > 10:
        diff(f"... and {len(bad_acks) - 10} more tickets without exactly one acknowledgement")
    not_sent = {s: c for s, c in status.items() if s != "sent"}
    if not_sent:
        diff(f"outbox rows not sent: {not_sent}")
    received = sinks.messages()
    at_sink = Counter()
    rcpt_wrong = 0
    for _from, rcpt, raw in received:
        mid = _header(raw, "Message-ID")
        at_sink[mid] += 1
        row = sent_rows.get(mid)
        if row is not None and rcpt != [row[3]]:
            rcpt_wrong += 1
    distinct = set(at_sink)
    repeats = sum(at_sink.values()) - len(distinct)
    if distinct != set(sent_rows):
        diff(
            f"the SMTP sink received {len(distinct)} distinct acknowledgements, "
            f"{len(sent_rows)} rows are marked sent ({len(distinct - set(sent_rows))} received "
            f"but not marked, {len(set(sent_rows) - distinct)} marked but not received)"
        )
    if rcpt_wrong:
        diff(f"{rcpt_wrong} acknowledgement(s) went to another recipient than their row's")
    mids_per_ticket = Counter(sent_rows[m][0] for m in distinct if m in sent_rows)
    two = [t for t, c in mids_per_ticket.items() if c > 1]
    if two:
        diff(f"{len(two)} ticket(s) got two different acknowledgements")

    # -- attachments: every stored one on disk, whole (written tmp-then-rename by workers
    # that may be killed mid-write)
    files = db.path.with_name(db.path.name + ".files")
    shas = {sha for (sha,) in db.rows("SELECT DISTINCT sha256 FROM attachments")}
    broken = []
    for sha in shas:
        path = files / sha[:2] / sha
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != sha:
            broken.append(sha)
    if broken:
        diff(f"{len(broken)} attachment file(s) missing or not matching their hash")
    stray = sum(1 for _ in files.rglob(".*.tmp")) if files.is_dir() else 0

    # -- what the logs say
    logged = daemon.events()
    duplicates = sum(
        1 for e in logged if e.get("event") == "message_triaged" and e.get("action") == "duplicate"
    )
    connects = sum(1 for e in logged if e.get("event") == "mailbox_connected")
    errors = Counter(
        e.get("event")
        for e in logged
        if e.get("level") in ("error", "critical") or e.get("event") == "mailbox_error"
    )
    # A planned SMTP outage is a relay failing; each must end with the relay's all-clear.
    relay = Counter(e.get("event") for e in logged if str(e.get("event")).startswith("relay_"))
    if plan.outages:
        errors.pop("relay_failing", None)
    if relay["relay_failing"] > relay["relay_recovered"]:
        diff(
            f"relay_failing {relay['relay_failing']} times, relay_recovered only {relay['relay_recovered']}"
        )
    for c, name in ((chaos["kill"], "kills"), (chaos["restart"], "Dovecot restarts")):
        planned = plan.kills if name == "kills" else plan.restarts
        if c != planned:
            diff(f"{c} {name} done, {planned} planned")
    if daemon.exits:
        diff(f"the daemon exited by itself {len(daemon.exits)} time(s), status {daemon.exits}")
    if errors:
        diff(f"error-level log events: {dict(errors)}")
    if daemon.orphans:
        diff(f"{daemon.orphans} process(es) of killed daemons still running 5 s after the end")
    if chaos["smtp_down"] != plan.outages:
        diff(f"{chaos['smtp_down']} SMTP outages done, {plan.outages} planned")

    return [
        f"appended      {feeder.appended:,}: "
        + ", ".join(f"{k} {by_kind[k]:,}" for k in KINDS)
        + f" (human {n_human:,}, robot {n_robot:,}; {feeder.retries} append retries)",
        f"tickets       {tickets:,} (expected {by_kind['new']:,})",
        f"appends       {actions['append']:,} (expected {by_kind['reply']:,})",
        f"filtered      {actions['filtered']:,} (expected {n_robot:,}; "
        f"{sum(filtered_events.values()):,} filtered events)",
        f"quarantined   {actions['quarantined']:,}",
        f"stored        {len(rows):,} message rows, {len(per_mid):,} distinct Message-IDs",
        f"duplicates    {duplicates:,} re-fetched messages recorded as no-ops",
        f"acks          sent {len(sent_rows):,} (expected {sum(i.ack for i in items):,}), "
        f"suppressed {len(suppressed & ticket_ids):,} "
        f"(sent + suppressed = {len(sent_rows) + len(suppressed & ticket_ids):,}, "
        f"tickets {tickets:,}); at the sink {sum(at_sink.values()):,} received, "
        f"{len(distinct):,} distinct, {repeats:,} repeated (same Message-ID); outbox {dict(status)}",
        f"attachments   {len(shas):,} distinct files, all present and intact"
        + (f" ({len(broken)} NOT)" if broken else "")
        + f"; {stray} half-written temporary file(s) left by kills",
        f"folders       INBOX {inbox:,}, Processed {len(in_folder['processed']):,}, "
        f"Filtered {len(in_folder['filtered']):,}, Errors {len(in_folder['errors']):,}",
        f"chaos         kills {chaos['kill']} ("
        + ", ".join(
            f"{label} {chaos['kill:' + m]}"
            + (
                f" ({chaos['kill:' + m + ':missed']} fell back to a random moment)"
                if chaos["kill:" + m + ":missed"]
                else ""
            )
            for m, label in (
                ("random", "at random"),
                ("commit", "right after a commit"),
                ("accepted", "right after the SMTP server accepted an ack"),
            )
        )
        + f"), Dovecot restarts {chaos['restart']} ({chaos['crash']} of them after a crash), "
        f"SMTP outages {chaos['smtp_down']} ({sinks.down_seconds:.1f} s in all); "
        f"daemon starts {daemon.starts}, IMAP (re)connects {connects}, "
        f"processes outliving their daemon by 5 s {daemon.orphans}",
        f"quiet         {chaos['quiet_bursts']} bursts of {plan.quiet_size} after the chaos, "
        f"each handled within {chaos['quiet_worst']:g} s (limit {PROBE_SECONDS:g} s)",
        f"logged errors {dict(errors) or 'none'}",
    ]


def _check_hook(hook: Hook, db: Db, diff) -> list[str]:
    """Every ticket's ticket.created reached the receiver under one delivery id, and every
    row is sent; a delivery taken (2xx) more than once is counted: a kill fell between the
    receiver's answer and our mark, and the repeat carried the same id by construction."""
    tickets = {number for (number,) in db.rows("SELECT number FROM tickets")}
    ids_of: dict[str, set[str]] = {}
    unverified = 0
    for r in hook.rx.requests:
        unverified += r.verified is not True
        ids_of.setdefault(r.json()["data"]["ticket"], set()).add(r.headers["webhook-id"])
    accepted = Counter(hook.accepted)
    status = Counter(dict(db.rows("SELECT status, COUNT(*) FROM deliveries GROUP BY status")))
    missing = sorted(tickets - {t for t, ids in ids_of.items() if ids & set(accepted)})
    split = [t for t, ids in ids_of.items() if len(ids) > 1]
    if missing:
        diff(f"{len(missing)} ticket(s) never taken by the webhook, e.g. {missing[:3]}")
    if split:
        diff(f"{len(split)} ticket(s) delivered under more than one webhook-id, e.g. {split[:3]}")
    if set(status) - {"sent"}:
        diff(f"webhook deliveries not all sent: {dict(status)}")
    if unverified:
        diff(f"{unverified} webhook request(s) failed signature verification")
    again = sum(n - 1 for n in accepted.values() if n > 1)
    return [
        f"webhook       {len(tickets):,} tickets, {len(accepted):,} delivered (2xx), "
        f"{len(hook.rx.requests):,} requests in all ({hook.outages} outages answered 503 or "
        f"closed); taken twice {again} (same webhook-id); rows {dict(status)}"
    ]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--postgres" in argv:  # the failover soak: two daemons on one PostgreSQL store
        import failover

        return failover.main([a for a in argv if a != "--postgres"])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="about 200 messages, under a minute")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    parser.add_argument("--count", type=int, help="messages (default 2,000; 200 with --short)")
    parser.add_argument("--kills", type=int)
    parser.add_argument("--restarts", type=int)
    parser.add_argument("--outages", type=int)
    parser.add_argument("--keep", action="store_true", help="keep the run's folder")
    parser.add_argument(
        "--mail-log", action="store_true", help="Dovecot logs each save, copy and expunge"
    )
    parser.add_argument("--time-limit", type=float, help="seconds for the whole run")
    args = parser.parse_args(argv)
    reason = dovecot_skip_reason() or smtp_skip_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    plan = SHORT if args.short else LONG
    overrides = {
        k: getattr(args, k) for k in ("count", "kills", "restarts", "outages", "time_limit")
    }
    plan = Plan(**{**plan.__dict__, **{k: v for k, v in overrides.items() if v is not None}})
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    # SIGTERM (a test's timeout, a Ctrl-C elsewhere) unwinds like an exception, so the
    # daemon, Dovecot and the SMTP server are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run(
        plan,
        seed,
        keep=args.keep,
        progress=lambda s: print(s, flush=True),
        mail_log=args.mail_log,
    )
    print(report.text(), flush=True)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
