"""Every acknowledgement exactly once: two daemons on one config, and two drainers on one outbox.

1. two daemons: `triage run` started twice at once on one configuration, 400 messages from
   400 senders waiting in a private Dovecot, acknowledgements through an SMTP sink (aiosmtpd).
   Prints how many acknowledgements arrived, how many distinct (by Message-ID and by ticket),
   how many arrived twice or more, and what became of each daemon.
2. two drainers on 400 pending outbox rows, with no mail to read:
   a. a daemon and `triage outbox send --once` run in a loop beside it;
   b. two `triage outbox send --once` started at once.
   Prints arrivals, distinct and repeated: repeated must be 0.

    .venv/bin/python bench/delivery.py                       # this checkout
    .venv/bin/python bench/delivery.py --checkout /work/main # another checkout's triage, e.g.
                                                             # the release before, for comparison
    .venv/bin/python bench/delivery.py --count 100

Exits 1 when any acknowledgement arrived twice (or one never arrived), else 0.
Needs root and Debian's dovecot-imapd, like the tests that use tests/support/dovecot.py.
"""

from __future__ import annotations

import argparse
import email
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from tests.support import imap  # noqa: E402
from tests.support.daemon import Daemon, Database, log_events, run_daemon  # noqa: E402
from tests.support.dovecot import Dovecot  # noqa: E402
from tests.support.dovecot import skip_reason as dovecot_skip_reason  # noqa: E402
from tests.support.smtp_sink import SmtpSink  # noqa: E402
from tests.support.smtp_sink import skip_reason as smtp_skip_reason  # noqa: E402

USER = "support"
SETTLE = 3.0  # seconds with nothing new arriving before counting


def message(n: int) -> bytes:
    """A human request from its own sender (five acknowledgements a day per address)."""
    return (
        f"From: Customer {n} <user{n}@acme.example>\r\nTo: support@msp.example\r\n"
        f"Subject: Printer {n} is jammed\r\nDate: Tue, 10 Mar 2026 09:00:00 +0000\r\n"
        f"Message-ID: <bench{n}@mail.acme.example>\r\n\r\nHello,\r\nprinter {n} is jammed.\r\n"
    ).encode()


def daemon(triage: Triage, tmp: Path, dc: Dovecot | None, smtp_port: int) -> Daemon:
    """The harness's `triage run` from the checkout under test, its config in `tmp`: the
    mailbox on `dc` (none: it only drains the outbox), acknowledgements through the sink."""
    return Daemon(
        tmp,
        dc,
        quick=False,
        checkout=triage.checkout,
        mailbox={"poll_seconds": 1, "timeout": 10},
        daemon={"message_timeout": 30, "backoff_max_seconds": 1, "outbox_seconds": 1},
        extra=(
            '[identity]\ndomains = ["msp.example"]\nsupport_address = "support@msp.example"\n'
            f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\ntls = "none"\n'
            "allow_insecure = true\ntimeout = 10\n"
        ),
    )


class Triage:
    """Commands of the triage in `checkout`, run with this interpreter."""

    def __init__(self, checkout: Path) -> None:
        self.checkout = checkout
        self.env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        self.env["PYTHONPATH"] = str(checkout)

    def start(self, *args: str, log: Path) -> subprocess.Popen:
        with log.open("ab") as err:
            return subprocess.Popen(
                [sys.executable, "-m", "triage.cli", *args],
                cwd=self.checkout,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )

    def has(self, *command: str) -> bool:
        done = subprocess.run(
            [sys.executable, "-m", "triage.cli", *command, "--help"],
            cwd=self.checkout,
            env=self.env,
            capture_output=True,
        )
        return done.returncode == 0


@dataclass
class Count:
    arrived: int
    distinct: int
    repeated: int  # distinct Message-IDs that arrived more than once
    extra: int  # arrivals beyond the first of each
    tickets: int  # distinct recipients (one ticket, one sender each)

    @classmethod
    def of(cls, sink: SmtpSink) -> Count:
        got = sink.messages()
        ids = Counter(email.message_from_bytes(raw)["Message-ID"] for _f, _t, raw in got)
        return cls(
            len(got),
            len(ids),
            sum(1 for c in ids.values() if c > 1),
            sum(c - 1 for c in ids.values()),
            len({rcpts[0] for _f, rcpts, _raw in got}),
        )

    def text(self, expected: int) -> str:
        return (
            f"{self.arrived} arrived, {self.distinct} distinct of {expected} expected"
            f" ({self.tickets} recipients), {self.repeated} arrived twice or more"
            f" ({self.extra} extra)"
        )

    def exact(self, expected: int) -> bool:
        return self.arrived == self.distinct == self.tickets == expected


def settle(sink: SmtpSink, want: int, limit: float) -> None:
    """Until `want` arrived and nothing new came for SETTLE seconds, or `limit` passed."""
    end = time.monotonic() + limit
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() < end:
        n = len(sink.messages())
        if n != last:
            last, quiet_since = n, time.monotonic()
        elif n >= want and time.monotonic() - quiet_since >= SETTLE:
            return
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            return None
    return proc.returncode


def two_daemons(triage: Triage, tmp: Path, count: int) -> tuple[Count, list[str]]:
    tmp.mkdir(parents=True)
    with Dovecot.start(tmp / "imap") as dc, SmtpSink.start(tmp) as sink:
        with imap.session(dc, USER) as m:  # one session for all the APPENDs
            for n in range(count):
                m.append("INBOX", None, None, message(n))
        first = daemon(triage, tmp, dc, sink.port)
        started = time.monotonic()
        procs = [
            first.start().proc,
            run_daemon(first.config, tmp / "d2.log", checkout=triage.checkout),
        ]
        end = started + 120
        while time.monotonic() < end and (
            imap.count(dc, USER, "INBOX") > 0 or len(sink.messages()) < count
        ):
            time.sleep(0.2)
        settle(sink, count, max(5.0, end - time.monotonic()))
        elapsed = time.monotonic() - started
        notes = []
        for k, proc in enumerate(procs, 1):
            running = proc.poll() is None
            rc = stop(proc)
            said = (first.log if k == 1 else tmp / "d2.log").read_text(errors="replace")
            refused = "in use by another" in said
            notes.append(
                f"daemon {k}: "
                + (
                    "refused to start (exit 1, named the other)"
                    if refused
                    else f"ran until stopped (exit {rc})"
                    if running
                    else f"ended by itself, exit {rc}"
                )
            )
        notes.append(f"INBOX left {imap.count(dc, USER, 'INBOX')}, {elapsed:.1f} s")
        db = Database(first.db)
        tickets = db.rows("SELECT COUNT(*), COUNT(DISTINCT message_key) FROM tickets")[0]
        db.close()
        notes.append(f"tickets {tickets[0]} ({tickets[1]} distinct messages)")
        return Count.of(sink), notes


def fill_outbox(db: Path, count: int, checkout: Path) -> None:
    """`count` pending acknowledgement rows, written by the checkout's own Store."""
    code = f"""
import sys
from datetime import UTC, datetime
from triage.store.sqlite import Store
from triage.sinks import outbox
store = Store(__import__("pathlib").Path({str(db)!r}))
now = datetime.now(UTC)
store.begin()
# their tickets first: outbox.ticket_id is a foreign key
store.conn.executemany(
    "INSERT OR IGNORE INTO tickets (id, number, status, requester, created_at)"
    " VALUES (?, ?, 'open', 'someone@acme.example', ?)",
    [(n + 1, f"T-{{n + 1:06d}}", now.isoformat()) for n in range({count})],
)
for n in range({count}):
    mid = f"<drain{{n}}@msp.example>"
    raw = (f"From: support@msp.example\\r\\nTo: user{{n}}@acme.example\\r\\nSubject: [#T-{{n + 1:06d}}] x\\r\\n"
           f"Message-ID: {{mid}}\\r\\nDate: Tue, 10 Mar 2026 09:00:00 +0000\\r\\n\\r\\nWe have it.\\r\\n")
    store.conn.execute(
        "INSERT INTO outbox (ticket_id, to_addr, subject, message_id, raw, status, attempts, created_at)"
        " VALUES (?, ?, 'x', ?, ?, 'pending', 0, ?)",
        (n + 1, f"user{{n}}@acme.example", mid, raw, now.isoformat()),
    )
store.commit()
store.close()
"""
    subprocess.run([sys.executable, "-c", code], cwd=checkout, check=True)


def two_drainers(triage: Triage, tmp: Path, count: int, mode: str) -> tuple[Count, list[str]]:
    tmp.mkdir(parents=True)
    with SmtpSink.start(tmp) as sink:
        drainer = daemon(triage, tmp, None, sink.port)
        fill_outbox(drainer.db, count, triage.checkout)
        send = ("outbox", "send", "--once", "--config", str(drainer.config))
        started = time.monotonic()
        runs = 0
        if mode == "daemon":
            drainer.start()
            end = started + 60
            while time.monotonic() < end and len(sink.messages()) < count:
                runs += 1
                triage.start(*send, log=tmp / "send.log").wait(60)
            settle(sink, count, max(5.0, end - time.monotonic()))
            rc = drainer.stop()
            notes = [
                f"daemon exit {rc}, sent {sent_by(drainer.log)}; `outbox send --once` ran"
                f" {runs} times beside it, sent {sent_by(tmp / 'send.log')}"
            ]
        else:
            procs = [triage.start(*send, log=tmp / f"send{k}.log") for k in (1, 2)]
            rcs = [p.wait(120) for p in procs]
            settle(sink, count, 10)
            split = [sent_by(tmp / f"send{k}.log") for k in (1, 2)]
            notes = [f"two `outbox send --once` at once, exit {rcs}, sent {split[0]} + {split[1]}"]
        notes[-1] += f", {time.monotonic() - started:.1f} s"
        db = Database(drainer.db)
        states = dict(db.rows("SELECT status, COUNT(*) FROM outbox GROUP BY status"))
        db.close()
        notes.append(f"outbox {states}")
        return Count.of(sink), notes


def sent_by(log: Path) -> int:
    """Acknowledgements a drainer logged as sent."""
    return len(log_events(log, "auto_reply_sent"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the triage to run")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder")
    args = parser.parse_args(argv)
    reason = dovecot_skip_reason() or smtp_skip_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    triage = Triage(args.checkout.resolve())
    tmp = Path(tempfile.mkdtemp(prefix="triage-delivery-"))
    print(
        f"delivery bench: {args.count} messages, triage from {triage.checkout},"
        f" {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; folder {tmp}",
        flush=True,
    )
    ok = True
    try:
        count, notes = two_daemons(triage, tmp / "daemons", args.count)
        ok &= count.exact(args.count)
        print(f"two daemons, one config:   {count.text(args.count)}", flush=True)
        for note in notes:
            print(f"    {note}", flush=True)
        if not triage.has("outbox", "send"):
            print("two drainers:              n/a (this triage has no `outbox send --once`)")
        else:
            for mode, label in (
                ("daemon", "daemon + send --once loop:"),
                ("two", "two send --once at once: "),
            ):
                count, notes = two_drainers(triage, tmp / f"drain-{mode}", args.count, mode)
                ok &= count.exact(args.count)
                print(f"{label} {count.text(args.count)}", flush=True)
                for note in notes:
                    print(f"    {note}", flush=True)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("PASS" if ok else "FAIL: not every acknowledgement arrived exactly once")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
