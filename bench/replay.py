"""Replay rate against the mail-parser-alone rate, on the same generated messages.

Generates a realistic mix (human requests plain/HTML/with attachments, replies
to earlier ones, DSN bounces, auto-replies, list mail), then in one run:
  1. mail-parser alone, one process: parse_from_bytes + body, every message;
  2. `triage replay` into a fresh database (the real code path: parse on every
     core, filters, contacts, priority, SLA, one savepoint per message,
     commits in groups), from .eml files on disk.
Prints both rates and their ratio.

    .venv/bin/python bench/replay.py [--count 10000]

`--against DIR` (a checkout of another revision, e.g. `git worktree add /tmp/old REV`) replays
the same messages with that code too, each replay in a fresh interpreter, the two in turn
(alternating which goes first), and prints both rates, their ratios to mail-parser alone
measured just before, and the CPU a message (writer and workers): the same mail for both,
so a change in the generator cannot pass for a change in speed.

    .venv/bin/python bench/replay.py --count 6000 --runs 5 --against /tmp/old
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The code measured: this checkout, or in a child run (`--code DIR`) the one named.
CODE = Path(sys.argv[sys.argv.index("--code") + 1]) if "--code" in sys.argv else ROOT
sys.path.insert(0, str(CODE))

WORDS = [
    "printer",
    "server",
    "outlook",
    "vpn",
    "password",
    "reset",
    "laptop",
    "screen",
    "network",
    "slow",
    "email",
    "cannot",
    "login",
    "invoice",
    "account",
    "license",
    "backup",
    "restore",
    "update",
    "error",
    "crash",
    "install",
    "access",
    "share",
    "drive",
    "the",
    "a",
    "is",
    "on",
    "our",
    "my",
    "since",
    "this",
    "morning",
    "please",
    "help",
    "urgent",
    "again",
    "all",
    "users",
    "office",
]


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _transit(rng: random.Random, domain: str) -> list[str]:
    """The headers real mail collects in transit: Received chain, DKIM, ARC, auth results."""
    hops = [
        f"Received: from mx{n}.{domain} (mx{n}.{domain} [198.51.100.{rng.randrange(255)}])\n"
        f"\tby mx.msp.example (Postfix) with ESMTPS id {rng.randrange(16**10):010X}\n"
        f"\tfor <support@msp.example>; Tue, 10 Mar 2026 09:{rng.randrange(60):02d}:00 +0000 (UTC)"
        for n in range(rng.randint(2, 5))
    ]
    sig = base64.b64encode(rng.randbytes(128)).decode()
    return hops + [
        "Return-Path: <bounce-" + str(rng.randrange(10**6)) + f"@{domain}>",
        f"Authentication-Results: mx.msp.example; dkim=pass header.d={domain}; spf=pass "
        f"smtp.mailfrom={domain}; dmarc=pass header.from={domain}",
        f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s=sel1;\n"
        "\th=from:to:subject:date:message-id:mime-version:content-type;\n"
        f"\tbh={sig[:44]};\n\tb={sig}",
        f"ARC-Seal: i=1; a=rsa-sha256; t=1773133200; cv=none; d={domain}; s=arc;\n\tb={sig[:88]}",
        "X-Mailer: Microsoft Outlook 16.0",
        f"Thread-Index: {base64.b64encode(rng.randbytes(22)).decode()}",
        "X-MS-Has-Attach: ",
        "Content-Language: en-US",
    ]


def _human(rng: random.Random, i: int, reply_to: str | None, author: str | None = None) -> str:
    """A person's message; a reply (`reply_to`) comes from `author`, who wrote the one it answers."""
    company = rng.choice(["acme.example", "globex.example", "initech.example", "gmail.com"])
    sender = f"user{rng.randrange(500)}@{company}"
    if author:  # drawn all the same, so the rest of the mix stays as it was
        sender, company = author, author.rpartition("@")[2]
    mid = f"<h{i}.{rng.randrange(10**9)}@mail.{company}>"
    subject = _text(rng, rng.randint(3, 8)).capitalize()
    head = [
        *_transit(rng, company),
        f"From: User {i} <{sender}>",
        "To: support@msp.example",
        f"Subject: {'Re: ' if reply_to else ''}{subject}",
        f"Date: Tue, 10 Mar 2026 {rng.randrange(24):02d}:{rng.randrange(60):02d}:00 +0000",
        f"Message-ID: {mid}",
        "MIME-Version: 1.0",
    ]
    if reply_to:
        head += [f"In-Reply-To: {reply_to}", f"References: {reply_to}"]
    body = "\n".join(_text(rng, 12) for _ in range(rng.randint(3, 25)))
    kind = rng.random()
    if kind < 0.55:
        head.append("Content-Type: text/plain; charset=utf-8")
        return "\n".join(head) + "\n\n" + body + "\n-- \nUser\n"
    if kind < 0.8:
        html = (
            "<html><body>"
            + "".join(f"<p>{line}</p>" for line in body.splitlines())
            + "</body></html>"
        )
        head.append('Content-Type: multipart/alternative; boundary="alt"')
        return "\n".join(head) + (
            f"\n\n--alt\nContent-Type: text/plain; charset=utf-8\n\n{body}\n"
            f"--alt\nContent-Type: text/html; charset=utf-8\n\n{html}\n--alt--\n"
        )
    blob = base64.encodebytes(rng.randbytes(rng.randint(2_000, 60_000))).decode()
    head.append('Content-Type: multipart/mixed; boundary="mix"')
    return "\n".join(head) + (
        f"\n\n--mix\nContent-Type: text/plain; charset=utf-8\n\n{body}\n"
        f'--mix\nContent-Type: application/pdf; name="scan{i}.pdf"\n'
        f'Content-Disposition: attachment; filename="scan{i}.pdf"\n'
        f"Content-Transfer-Encoding: base64\n\n{blob}--mix--\n"
    )


def _bounce(rng: random.Random, i: int) -> str:
    return "\n".join(_transit(rng, "mx.example.net")[:-5]) + (
        "\nReturn-Path: <>\nFrom: Mail Delivery System <MAILER-DAEMON@mx.example.net>\n"
        "To: support@msp.example\nSubject: Undelivered Mail Returned to Sender\n"
        f"Date: Tue, 10 Mar 2026 10:00:00 +0000\nMessage-ID: <b{i}@mx.example.net>\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\n\n'
        "--r\nContent-Type: text/plain\n\nI'm sorry to have to inform you that your message could not be delivered.\n"
        "--r\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
        f"Final-Recipient: rfc822; gone{i}@example.org\nAction: failed\nStatus: 5.1.1\n"
        "--r\nContent-Type: text/rfc822-headers\n\nFrom: support@msp.example\nSubject: hello\n--r--\n"
    )


def _autoreply(rng: random.Random, i: int) -> str:
    return "\n".join(_transit(rng, "globex.example")) + (
        f"\nFrom: Person {i} <p{i}@globex.example>\nTo: support@msp.example\n"
        f"Subject: Automatic reply: {_text(rng, 4)}\nAuto-Submitted: auto-replied\n"
        "X-Auto-Response-Suppress: All\n"
        f"Date: Tue, 10 Mar 2026 10:00:00 +0000\nMessage-ID: <a{i}@globex.example>\n"
        "Content-Type: text/plain; charset=utf-8\n\nI am away until Monday with limited access to mail.\n"
    )


def _list(rng: random.Random, i: int) -> str:
    return "\n".join(_transit(rng, "vendor.example")) + (
        f"\nFrom: News <news@vendor.example>\nTo: support@msp.example\nSubject: {_text(rng, 6)}\n"
        "List-Id: <news.vendor.example>\nList-Unsubscribe: <mailto:unsub@vendor.example>\nPrecedence: bulk\n"
        f"Date: Tue, 10 Mar 2026 10:00:00 +0000\nMessage-ID: <n{i}@vendor.example>\n"
        f"Content-Type: text/plain; charset=utf-8\n\n{_text(rng, 200)}\n"
    )


def generate(count: int, seed: int = 7) -> list[bytes]:
    """About 60 % human (a fifth of them replies), 20 % bounces, 12 % auto-replies, 8 % lists."""
    rng = random.Random(seed)
    out: list[bytes] = []
    human_ids: list[str] = []
    author_of: dict[str, str] = {}  # a reply comes from someone on the ticket: the author
    for i in range(count):
        r = rng.random()
        if r < 0.6:
            reply = rng.choice(human_ids) if human_ids and rng.random() < 0.2 else None
            text = _human(rng, i, reply, author_of.get(reply) if reply else None)
            mid = text.split("Message-ID: ", 1)[1].split("\n", 1)[0]
            human_ids.append(mid)
            author_of[mid] = text.split("\nFrom: ", 1)[1].split("<", 1)[1].split(">", 1)[0]
        elif r < 0.8:
            text = _bounce(rng, i)
        elif r < 0.92:
            text = _autoreply(rng, i)
        else:
            text = _list(rng, i)
        out.append(text.replace("\n", "\r\n").encode())
    return out


def parse_alone(messages: list[bytes]) -> float:
    import mailparser

    logging.getLogger("mailparser").setLevel(logging.ERROR)
    start = time.perf_counter()
    for raw in messages:
        mailparser.parse_from_bytes(raw).body  # noqa: B018 - the body is part of "parsing"
    return len(messages) / (time.perf_counter() - start)


def replay_rate(folder: Path, db: Path, count: int) -> tuple[float, dict[str, int]]:
    from triage import log
    from triage.config import Config
    from triage.sources.files import iter_paths

    try:
        from triage.core.pipeline import Rules
        from triage.engine.replay import replay
        from triage.store.sqlite import Store
    except ImportError:  # a checkout from before the modules moved (`--against`)
        from triage.pipeline import Rules  # type: ignore[no-redef]
        from triage.replay import replay  # type: ignore[no-redef]

        from triage.store import Store  # type: ignore[no-redef]

    log.setup("warning")
    start = time.perf_counter()
    rules = Rules.load(Config(db=db))
    store = Store(db)
    store.outbox_status = "replay"
    summary = replay(
        iter_paths([folder]),
        rules,
        store,
        datetime(2026, 3, 10, 14, 30, tzinfo=UTC),
        lambda d: None,
    )
    store.close()
    elapsed = time.perf_counter() - start
    assert summary.total == count, summary.counts
    return count / elapsed, summary.counts


def attachment_store_cost(messages: list[bytes], root: Path) -> tuple[int, float]:
    """Files the attachment store writes for this set, and the CPU each costs here.

    Creating a file is the one cost replay pays that parsing alone does not,
    and on this machine's disk it varies several-fold from run to run.
    """
    from triage.core.message import Email
    from triage.store import files as attachments

    files = [a for raw in messages for a in Email.from_bytes(raw).attachments]
    start = time.process_time()
    for a in files:
        attachments.save(root, a.sha256, a.data)
    return len(files), (time.process_time() - start) / max(1, len(files))


def child(folder: Path, db: Path) -> None:
    """One replay with the code of `--code`, in this fresh interpreter: rate, CPU, decisions."""
    import json
    import resource

    count = sum(1 for _ in folder.glob("*.eml"))
    me, kids = resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN
    before = [resource.getrusage(who) for who in (me, kids)]
    rate, counts = replay_rate(folder, db, count)
    after = [resource.getrusage(who) for who in (me, kids)]
    cpu = [
        (a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime) / count * 1e6
        for a, b in zip(after, before, strict=True)
    ]
    print(json.dumps({"rate": rate, "writer": cpu[0], "workers": cpu[1], "counts": counts}))


def against(args: argparse.Namespace, messages: list[bytes]) -> None:
    """This checkout and `--against` on the same messages, in turn (see the module)."""
    import json
    import subprocess

    codes = {"this": ROOT, "other": Path(args.against).resolve()}
    found: dict[str, list[dict]] = {name: [] for name in codes}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "mail"
        folder.mkdir()
        for n, raw in enumerate(messages):
            (folder / f"{n:06d}.eml").write_bytes(raw)
        for run in range(args.runs):
            order = list(codes) if run % 2 == 0 else list(reversed(codes))
            for name in order:
                alone = parse_alone(messages)
                db = Path(tmp) / f"{name}{run}.db"
                done = subprocess.run(
                    [sys.executable, __file__, "--code", str(codes[name]), "--child",
                     str(folder), str(db)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                result = json.loads(done.stdout.strip().splitlines()[-1])
                found[name].append({**result, "ratio": result["rate"] / alone})
    for name, code in codes.items():
        runs = found[name]
        med = {
            k: statistics.median(r[k] for r in runs) for k in ("rate", "ratio", "writer", "workers")
        }
        each = ", ".join(f"{r['ratio']:.2f}" for r in runs)
        print(f"{name:5} {code}")
        print(
            f"      replay {med['rate']:,.0f} messages/s, ratio {med['ratio']:.2f}x (median of "
            f"{len(runs)}; run by run {each}); CPU a message: writer {med['writer']:,.0f} µs, "
            f"workers {med['workers']:,.0f} µs"
        )
        print(f"      decisions {runs[-1]['counts']}")
    mine, theirs = (statistics.median(r["rate"] for r in found[n]) for n in codes)
    print(f"this ÷ other        {mine / theirs:.1%} of the other's replay rate")


def main() -> None:
    if "--child" in sys.argv:
        at = sys.argv.index("--child")
        child(Path(sys.argv[at + 1]), Path(sys.argv[at + 2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3, help="repeat and report the median")
    parser.add_argument("--against", help="a checkout of another revision to compare with")
    args = parser.parse_args()
    messages = generate(args.count)
    if args.against:
        against(args, messages)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "mail"
        folder.mkdir()
        for n, raw in enumerate(messages):
            (folder / f"{n:06d}.eml").write_bytes(raw)
        parse_rates, replay_rates = [], []
        for run in range(args.runs):
            parse_rates.append(parse_alone(messages))
            rate, counts = replay_rate(folder, Path(tmp) / f"bench{run}.db", args.count)
            replay_rates.append(rate)
        n_files, per_file = attachment_store_cost(messages, Path(tmp) / "files")
    p, r = statistics.median(parse_rates), statistics.median(replay_rates)
    size = sum(map(len, messages)) / len(messages)
    print(f"messages            {args.count:,} (mean {size / 1024:.1f} KiB): {counts}")
    print(f"machine             {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"mail-parser alone   {p:,.0f} messages/s (one process, median of {args.runs})")
    print(f"triage replay       {r:,.0f} messages/s (fresh database, median of {args.runs})")
    print(f"ratio               {r / p:.2f}x  (goal >= 1.5x)")
    if args.runs > 1:  # each replay against the parse-alone run just before it
        each = sorted(rr / pp for rr, pp in zip(replay_rates, parse_rates, strict=True))
        print(f"ratio, run by run   {', '.join(f'{x:.2f}' for x in each)}")
    print(
        f"attachment store    {n_files:,} files, {per_file * 1e6:,.0f} µs of CPU each to create "
        f"({n_files * per_file / args.count * 1e6:,.0f} µs per message on average)"
    )


if __name__ == "__main__":
    main()
