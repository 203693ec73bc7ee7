"""Graph ingest from the Graph stand-in, by the source alone and by `triage run`, beside replay.

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
     message of the client and of the server, and messages/s;
  4. `triage run` as a subprocess (`[[mailbox]] kind = "graph"` on the stand-in, the shipped
     defaults: delta pages of `batch = 100` unless --daemon-batch, after = "move"), on a fresh
     mailbox holding the same messages and a fresh database each run, timed from its start
     until `messages` holds every message and the stand-in's inbox is empty (every message
     moved); the CPU of the daemon and its workers and of the stand-in over that span, and
     the peak RSS of the daemon and its workers (bench/imap.py's sampler);
  5. the same for IMAP: `triage run` on the shipped defaults against the private Dovecot of
     step 3 holding the same messages (bench/imap.py's `ingest`), for the daemon's CPU per
     message on the IMAP path against the Graph path.

    .venv/bin/python bench/graph.py [--count 5000] [--batch 500] [--runs 3] [--skip-imap]
                                    [--daemon-batch N] [--skip-daemon]
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
from tests.support.daemon import Database, toml_lines  # noqa: E402
from tests.support.graph_drain import CLIENT_ID, SECRET, UPN, standard  # noqa: E402
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


def graph_table(g: GraphStandIn, folder: Path, upn: str, batch: int | None) -> str:
    """A `[[mailbox]] kind = "graph"` table on the stand-in, its secret in a file; the other
    keys at their shipped defaults (as a deployment would run)."""
    secret = folder / "graph-secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    table = {
        "name": "support",
        "kind": "graph",
        "tenant_id": g.tenant,
        "client_id": CLIENT_ID,
        "client_secret_file": str(secret),
        "user": upn,
        "authority_host": g.url,
        "graph_url": g.url + "/v1.0",
        "ca_file": str(g.ca_file),
        "batch": batch,
    }
    return f"[[mailbox]]\n{toml_lines(table)}\n"


def daemon_graph(g: GraphStandIn, folder: Path, upn: str, count: int, batch: int | None) -> dict:
    """`triage run` draining `upn`'s inbox on the stand-in into a fresh database: from the
    process's start until `messages` holds `count` rows and the inbox is empty."""
    folder.mkdir(parents=True)
    d = imap_bench.BenchDaemon(folder, None, extra=graph_table(g, folder, upn, batch))
    db = Database(d.db)
    limit = 120 + count / 20  # seconds: below 20 messages/s is a failure here
    standin_before = cpu_seconds(g.proc.pid)
    result: dict = {"messages": count}
    try:
        d.start()
        assert d.proc is not None and d.sampler is not None
        start, next_look = d.started, 0.0
        while True:
            now = time.perf_counter()
            if not d.running():
                raise RuntimeError(f"the daemon exited with {d.proc.returncode}; see {d.log}")
            if now - start > limit:
                raise RuntimeError(f"not drained after {limit:.0f} s; see {d.log}")
            rows = db.scalar("SELECT COUNT(*) FROM messages") or 0
            if rows and "first_row_s" not in result:
                result["first_row_s"] = now - start
            # the inbox is asked only once every row is in (its listing is the whole folder)
            if rows >= count and now > next_look:
                next_look = now + 0.1
                if not g.message_ids(upn, "inbox"):
                    result["wall_s"] = time.perf_counter() - start
                    result["cpu_s"] = imap_bench.tree_cpu(d.proc.pid)
                    result["standin_cpu_s"] = cpu_seconds(g.proc.pid) - standin_before
                    result["rows"] = rows
                    break
            time.sleep(imap_bench.POLL_EVERY)
        d.sampler.sample()
        result["peak_kib"] = d.sampler.peaks(start, time.perf_counter())[1]
        result["actions"] = dict(db.rows("SELECT action, COUNT(*) FROM messages GROUP BY action"))
    finally:
        db.close()
        d.stop()
    result["folders"] = {
        f: len(g.message_ids(upn, f))
        for f in ("inbox", "Triage/Processed", "Triage/Filtered", "Triage/Errors")
    }
    problems, other = d.log_problems()
    result["problems"] = {f"{level}:{event}": n for (level, event), n in problems.items()}
    result["tracebacks"] = len(other)
    return result


def imap_fetch(
    tmp: Path, messages: list[bytes], runs: int, daemon: bool = True
) -> tuple[list[dict], list[imap_bench.Ingest]] | str:
    """triage's ImapSession fetching the same messages from a private Dovecot (imaps), as
    bench/imap.py's fetch-only figure: client CPU, Dovecot's CPU (all its processes), wall;
    then (`daemon`) `triage run` ingesting them from that Dovecot, as bench/imap.py's ingest.
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
        ingests = []
        for run in range(runs if daemon else 0):
            filled = imap_bench.fill(dc, messages, "append") if run else 0.0  # INBOX is full
            d = imap_bench.BenchDaemon(tmp / f"daemon{run}", dc)
            try:
                ingests.append(imap_bench.ingest(d, len(messages), filled))
            finally:
                d.stop()
        return out, ingests
    finally:
        dc.stop()


def per_message(runs: list[dict], key: str) -> float:
    """Median over the runs of `key` seconds per message, in µs."""
    return statistics.median(r[key] / r["messages"] * 1e6 for r in runs)


def print_daemons(
    daemons: list[dict], ingests: list[imap_bench.Ingest], replay: float, args
) -> None:
    """The `triage run` figures: Graph from the stand-in, IMAP from Dovecot, against replay."""
    rates = [r["messages"] / r["wall_s"] for r in daemons]
    batch = args.daemon_batch or "100 (shipped)"
    print(
        f'`triage run` from the stand-in (kind = "graph", batch {batch}, move), process '
        f"start → every row committed and the inbox empty, median of {len(daemons)}: "
        f"{statistics.median(rates):,.0f} messages/s "
        f"(runs: {', '.join(f'{x:,.0f}' for x in rates)}; first row after "
        f"{statistics.median(r['first_row_s'] for r in daemons):.1f} s)"
    )
    print(
        f"  ÷ replay of the same messages: {statistics.median(rates) / replay:.0%}; "
        f"CPU per message: daemon + workers {per_message(daemons, 'cpu_s'):,.0f} µs, "
        f"stand-in {per_message(daemons, 'standin_cpu_s'):,.0f} µs; peak RSS of the daemon "
        f"and its workers {max(r['peak_kib'] for r in daemons) / 1024:.0f} MiB"
    )
    last = daemons[-1]
    print(f"  decisions {dict(sorted(last['actions'].items()))}; folders {last['folders']}")
    problems = {k: v for r in daemons for k, v in r["problems"].items()}
    if problems or any(r["tracebacks"] for r in daemons):
        print(
            f"  warnings/errors in the daemon's log: {problems}, "
            f"{sum(r['tracebacks'] for r in daemons)} lines not JSON"
        )
    if not ingests:
        print("  IMAP `triage run` not measured (--skip-imap or Dovecot cannot run here)")
        return
    imap_rates = [i.rate for i in ingests]
    imap_cpu = statistics.median(i.daemon_cpu / i.count * 1e6 for i in ingests)
    print(
        f"`triage run` from Dovecot (imaps, shipped defaults), same messages, median of "
        f"{len(ingests)}: {statistics.median(imap_rates):,.0f} messages/s "
        f"(runs: {', '.join(f'{x:,.0f}' for x in imap_rates)}), "
        f"÷ replay {statistics.median(imap_rates) / replay:.0%}; CPU per message: daemon + "
        f"workers {imap_cpu:,.0f} µs, Dovecot "
        f"{statistics.median(i.server_cpu / i.count * 1e6 for i in ingests):,.0f} µs"
    )
    print(
        f"  daemon CPU per message, Graph ÷ IMAP: "
        f"{per_message(daemons, 'cpu_s') / imap_cpu:.2f}× "
        f"(+{per_message(daemons, 'cpu_s') - imap_cpu:,.0f} µs); Graph ÷ IMAP rate: "
        f"{statistics.median(rates) / statistics.median(imap_rates):.0%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-imap", action="store_true", help="no Dovecot comparison")
    parser.add_argument(
        "--daemon-batch", type=int, default=None, help="the daemon's `batch` (shipped: 100)"
    )
    parser.add_argument("--skip-daemon", action="store_true", help="no `triage run` figures")
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
        replays, replay_cpu = [], []
        for run in range(args.runs):
            cpu = own_seconds()
            rate, decided = replay_bench.replay_rate(folder, Path(tmp) / f"r{run}.db", args.count)
            replay_cpu.append((own_seconds() - cpu) / args.count * 1e6)
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
        daemons = []
        for run in range(0 if args.skip_daemon else args.runs):
            upn = f"daemon{run}@contoso.example"  # a fresh mailbox and a fresh database
            g.add_mailbox(upn)
            fill(g, messages, upn)
            got = daemon_graph(g, Path(tmp) / f"daemon{run}", upn, args.count, args.daemon_batch)
            assert got["rows"] == args.count and got["folders"]["inbox"] == 0, got
            daemons.append(got)

    if args.skip_imap:
        imap: tuple[list[dict], list[imap_bench.Ingest]] | str = "--skip-imap"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            imap = imap_fetch(Path(tmp) / "imap", messages, args.runs, not args.skip_daemon)

    others = (busy_seconds() - machine) - (own_seconds() - mine)
    quiet = others / (time.perf_counter() - started_at)
    rates = [r["messages"] / r["wall_s"] for r in runs]
    client = [r["cpu_s"] / r["messages"] * 1e6 for r in runs]
    server = [r["standin_cpu_s"] / r["messages"] * 1e6 for r in runs]
    grown = [(r["peak_kib"] - r["base_kib"]) / 1024 for r in runs]
    print(f"parse alone (mail-parser), median of {args.runs}: {parse:,.0f} messages/s")
    print(
        f"replay from .eml into a fresh database, median of {args.runs}: {replay:,.0f} messages/s"
        f" ({statistics.median(replay_cpu):,.0f} µs CPU per message, in this process; "
        f"decisions {dict(sorted(decided.items()))})"
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
        ingests: list[imap_bench.Ingest] = []
    else:
        fetched, ingests = imap
        print(
            f"  IMAP (triage ImapSession.fetch, imaps, batches of 100) client "
            f"{per_message(fetched, 'cpu_s'):,.0f} µs, Dovecot "
            f"{per_message(fetched, 'server_s'):,.0f} µs, "
            f"{statistics.median(r['messages'] / r['wall_s'] for r in fetched):,.0f} messages/s"
        )
        print(
            f"  Graph client ÷ IMAP client CPU per message: "
            f"{per_message(fetches, 'cpu_s') / per_message(fetched, 'cpu_s'):.1f}×"
        )
    if daemons:
        print_daemons(daemons, ingests, replay, args)
    print(f"other processes used {quiet:.2f} cores on average while this ran")
    print(
        "note: a real tenant adds network latency (tens of ms a request) and Outlook's "
        "limits (4 requests in flight, 10,000 per 10 minutes per mailbox)"
    )


if __name__ == "__main__":
    main()
