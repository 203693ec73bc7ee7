"""The Graph read path against the Graph stand-in, beside parsing and replay of the same messages.

In one run, with bench/replay.py's generated mix:

  1. parsing alone (mail-parser, bench/replay.py's `parse_alone`) and replay from .eml files
     into a fresh database (`replay_rate`): what ingest would be with a free source;
  2. the Graph source draining a stand-in mailbox holding the same messages (tests/support/
     graph_standin.py, HTTPS on 127.0.0.1, its own process): delta pages of --batch, `$value`
     for each message (four in flight), a move to Triage/Processed for each after it is
     "committed" (tests/support/graph_drain.py, in a fresh process). Printed: messages/s,
     the drain process's CPU per message, the stand-in's CPU per message, and the growth of
     the drain process's peak memory;
  3. the fetch path alone, Graph against IMAP: the Graph source walking the delta pages and
     reading `$value` of a fresh mailbox with no move (`--fetch-only`), and triage's
     ImapSession (UID SEARCH, then RFC822.SIZE and BODY.PEEK[] in the daemon's batches of 100)
     from a private Dovecot over imaps holding the same messages (bench/imap.py's
     `fetch_triage`; skipped, with the reason, where Dovecot cannot run). Printed: CPU per
     message of the client and of the server, and messages/s.

The daemon does not read Graph yet (the integration is the second half of issue 17), so the
ingest figure here is the source's part of it: what the daemon would add is the same work as
for IMAP (workers, the store), which replay measures.

    .venv/bin/python bench/graph.py [--count 5000] [--batch 500] [--runs 3] [--skip-imap]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import imap as imap_bench  # noqa: E402
import replay as replay_bench  # noqa: E402

from tests.support import dovecot  # noqa: E402
from tests.support.graph_drain import SECRET, UPN, standard  # noqa: E402
from tests.support.graph_standin import GraphStandIn  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, from /proc (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """CPU of this process and its children that have been waited for."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def fill(g: GraphStandIn, messages: list[bytes], upn: str = UPN) -> None:
    for start in range(0, len(messages), 1000):
        g.http.post(
            "/_standin/deliver",
            json={
                "upn": upn,
                "folder": "inbox",
                "raws": [base64.b64encode(m).decode() for m in messages[start : start + 1000]],
            },
        ).raise_for_status()


def drain_once(g: GraphStandIn, batch: int, upn: str = UPN, fetch_only: bool = False) -> dict:
    """One drain in a fresh process (its CPU and memory are the source's alone), as JSON."""
    before = cpu_seconds(g.proc.pid)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.support.graph_drain",
            "--url",
            g.url,
            "--ca-file",
            str(g.ca_file),
            "--tenant",
            g.tenant,
            "--after",
            "move",
            "--batch",
            str(batch),
            "--user",
            upn,
            *(["--fetch-only"] if fetch_only else []),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TRIAGE_TEST_GRAPH_SECRET": SECRET},
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    cost = json.loads(done.stdout.splitlines()[-1])
    cost["standin_cpu_s"] = cpu_seconds(g.proc.pid) - before
    return cost


def imap_fetch(tmp: Path, messages: list[bytes], runs: int) -> list[dict] | str:
    """triage's ImapSession fetching the same messages from a private Dovecot (imaps), as
    bench/imap.py's fetch-only figure: client CPU, Dovecot's CPU (all its processes), wall.
    The reason instead when Dovecot cannot run here."""
    reason = dovecot.skip_reason()
    if reason:
        return reason
    tmp.mkdir()
    os.chmod(tmp, 0o755)  # Dovecot's unprivileged processes traverse it
    dc = dovecot.Dovecot.start(tmp / "dovecot")
    try:
        imap_bench.fill(dc, messages, "append")
        password = tmp / "password"
        password.write_text(dc.users[imap_bench.USER] + "\n")
        out = []
        for _ in range(runs):
            before = imap_bench.tree_cpu(dc.pid or 0)
            wall, cpu = imap_bench.fetch_triage(
                dc, len(messages), sum(map(len, messages)), password_file=password
            )
            server = imap_bench.tree_cpu(dc.pid or 0) - before
            out.append(
                {"messages": len(messages), "wall_s": wall, "cpu_s": cpu, "server_s": server}
            )
        return out
    finally:
        dc.stop()


def per_message(runs: list[dict], key: str) -> float:
    """Median over the runs of `key` seconds per message, in µs."""
    return statistics.median(r[key] / r["messages"] * 1e6 for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-imap", action="store_true", help="no Dovecot comparison")
    args = parser.parse_args()
    machine, mine, started_at = busy_seconds(), own_seconds(), time.perf_counter()
    messages = replay_bench.generate(args.count)
    size = sum(map(len, messages))
    print(f"{args.count:,} generated messages, {size / 1e6:.1f} MB; {os.cpu_count()} cores")

    parse = statistics.median(replay_bench.parse_alone(messages) for _ in range(args.runs))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "eml"
        folder.mkdir()
        for n, raw in enumerate(messages):
            (folder / f"{n:06d}.eml").write_bytes(raw)
        replays = []
        for run in range(args.runs):
            rate, _ = replay_bench.replay_rate(folder, Path(tmp) / f"r{run}.db", args.count)
            replays.append(rate)
    replay = statistics.median(replays)

    runs = []
    with tempfile.TemporaryDirectory() as tmp, GraphStandIn.start(Path(tmp)) as g:
        standard(g)
        for _ in range(args.runs):
            fill(g, messages)
            started = time.perf_counter()
            cost = drain_once(g, args.batch)
            cost["process_s"] = time.perf_counter() - started
            assert cost["messages"] == args.count, cost
            runs.append(cost)
            g.http.post("/_standin/set", json={"expire_delta": UPN})  # next run: a fresh round
        fetches = []
        for run in range(args.runs):
            upn = f"fetch{run}@contoso.example"  # a fresh mailbox: nothing moved out of it
            g.add_mailbox(upn)
            fill(g, messages, upn)
            cost = drain_once(g, args.batch, upn, fetch_only=True)
            assert cost["messages"] == args.count, cost
            fetches.append(cost)

    if args.skip_imap:
        imap: list[dict] | str = "--skip-imap"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            imap = imap_fetch(Path(tmp) / "imap", messages, args.runs)

    others = (busy_seconds() - machine) - (own_seconds() - mine)
    quiet = others / (time.perf_counter() - started_at)
    rates = [r["messages"] / r["wall_s"] for r in runs]
    client = [r["cpu_s"] / r["messages"] * 1e6 for r in runs]
    server = [r["standin_cpu_s"] / r["messages"] * 1e6 for r in runs]
    grown = [(r["peak_kib"] - r["base_kib"]) / 1024 for r in runs]
    print(f"parse alone (mail-parser), median of {args.runs}: {parse:,.0f} messages/s")
    print(
        f"replay from .eml into a fresh database, median of {args.runs}: {replay:,.0f} messages/s"
    )
    print(
        f"Graph drain from the stand-in (delta pages of {args.batch}, $value, move), median of "
        f"{args.runs}: {statistics.median(rates):,.0f} messages/s "
        f"(runs: {', '.join(f'{x:,.0f}' for x in rates)})"
    )
    print(
        f"  CPU per message: drain process {statistics.median(client):,.0f} µs, "
        f"stand-in {statistics.median(server):,.0f} µs "
        f"(two requests per message: $value and move)"
    )
    print(
        f"  peak RSS of the drain process: {max(r['peak_kib'] for r in runs) / 1024:.0f} MiB, "
        f"{max(grown):.1f} MiB over its peak before the first page ({args.count:,} messages, "
        f"{size / 1e6:.0f} MB, drained)"
    )
    print(
        f"Graph drain ÷ replay: {statistics.median(rates) / replay:.0%}; "
        f"÷ parse alone: {statistics.median(rates) / parse:.0%}"
    )
    print(
        f"fetch path alone, CPU per message (median of {args.runs}): Graph (delta pages of "
        f"{args.batch}, $value) client {per_message(fetches, 'cpu_s'):,.0f} µs, stand-in "
        f"{per_message(fetches, 'standin_cpu_s'):,.0f} µs, "
        f"{statistics.median(r['messages'] / r['wall_s'] for r in fetches):,.0f} messages/s"
    )
    if isinstance(imap, str):
        print(f"  IMAP fetch path not measured: {imap}")
    else:
        print(
            f"  IMAP (triage ImapSession.fetch, imaps, batches of 100) client "
            f"{per_message(imap, 'cpu_s'):,.0f} µs, Dovecot {per_message(imap, 'server_s'):,.0f} µs, "
            f"{statistics.median(r['messages'] / r['wall_s'] for r in imap):,.0f} messages/s"
        )
        print(
            f"  Graph client ÷ IMAP client CPU per message: "
            f"{per_message(fetches, 'cpu_s') / per_message(imap, 'cpu_s'):.1f}×"
        )
    print(f"other processes used {quiet:.2f} cores on average while this ran")
    print(
        "note: a real tenant adds network latency (tens of ms a request) and Outlook's "
        "limits (4 requests in flight, 10,000 per 10 minutes per mailbox)"
    )


if __name__ == "__main__":
    main()
