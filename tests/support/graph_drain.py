"""Drive a GraphSession the way the daemon will: page, fetch, commit, acknowledge, keep the ledger.

For tests and bench/graph.py. `Ledger` stands for the daemon's store: rows keyed by Message-ID
(the message key's stand-in here), the folder's delta link, and counts of repeats, so a test
can assert "nothing lost, nothing doubled" on what was committed.
"""

from __future__ import annotations

import email.parser
import email.policy
import os
from dataclasses import dataclass, field

from tests.support.graph_standin import GraphStandIn
from triage.config.endpoints import Secret
from triage.sources.graph import GraphMailbox, GraphSession
from triage.sources.graph_auth import Credentials

UPN = "support@contoso.example"
CLIENT_ID = "5b1c3a9e-7d2f-4e8a-9c61-0f4d2e7b8a13"
SECRET = "s3cret~value.for.the.stand-in"


@dataclass
class Ledger:
    rows: dict[str, bytes] = field(default_factory=dict)  # Message-ID -> bytes committed
    repeats: int = 0  # messages seen again and recognised (the message key's no-op)
    link: str | None = None  # the folder's delta link (or nextLink mid-round)
    pages: int = 0

    def commit(self, raw: bytes) -> None:
        head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
        key = str(head.get("Message-ID", ""))
        if key in self.rows:
            self.repeats += 1
            return
        self.rows[key] = raw


class Crash(Exception):
    """Raised by a drain told to stop after n pages, between fetching and acknowledging."""


async def drain(
    session: GraphSession,
    ledger: Ledger,
    *,
    max_bytes: int = 10 * 1024 * 1024,
    crash_after_pages: int | None = None,
    acknowledge: bool = True,
) -> int:
    """One round from the ledger's link to a deltaLink; the number of messages committed.

    Without `acknowledge` the messages stay where they are (the fetch path alone, for
    bench/graph.py); the ledger still moves on, as it would after a commit in read mode."""
    done = 0
    async for page in session.changes(ledger.link):
        fetched, left = await session.fetch(list(page.ids), max_bytes)
        assert not left
        for f in fetched:
            if f.raw is not None:
                ledger.commit(f.raw)
        done += len(fetched)
        if crash_after_pages is not None and ledger.pages >= crash_after_pages:
            raise Crash(f"stopped after {ledger.pages} pages, before acknowledging")
        if acknowledge:
            await session.ack([f.id for f in fetched], "processed")
        ledger.link = page.resume  # only now: every message of the page is filed
        ledger.pages += 1
    return done


def credentials(
    g: GraphStandIn, client_id: str = CLIENT_ID, env: str = "TRIAGE_TEST_GRAPH_SECRET", **kw
) -> Credentials:
    os.environ.setdefault(env, SECRET)
    return Credentials(
        g.tenant,
        client_id,
        kw.pop("secret", Secret("env", env)),
        authority_host=g.url,
        ca_file=str(g.ca_file),
        **kw,
    )


def mailbox(g: GraphStandIn, **kw) -> GraphMailbox:
    creds = kw.pop("credentials", None) or credentials(g)
    return GraphMailbox(
        kw.pop("name", "support"), kw.pop("user", UPN), creds, graph_url=g.url + "/v1.0", **kw
    )


def standard(g: GraphStandIn, **app: object) -> None:
    """The usual tenant: one app with a secret, and the support mailbox."""
    g.add_app(CLIENT_ID, secret=SECRET, **app)
    g.add_mailbox(UPN)


class Keys(Ledger):
    """A ledger that keeps each message's key and size, not its bytes: for large backlogs,
    so what is measured is the source's memory, not the test's."""

    bytes_seen: int = 0

    def commit(self, raw: bytes) -> None:
        start = raw.find(b"Message-ID:")
        key = raw[start : raw.find(b"\r\n", start)].decode() if start >= 0 else str(len(self.rows))
        self.bytes_seen += len(raw)
        if key in self.rows:
            self.repeats += 1
            return
        self.rows[key] = b""


def main(argv: list[str] | None = None) -> None:
    """Drain a stand-in mailbox in this process and print what it cost, as JSON:
    messages, repeats, bytes, the peak RSS before and after (KiB), CPU and wall seconds."""
    import argparse
    import asyncio
    import json
    import resource
    import time

    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--after", default="move")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--user", default=UPN)
    parser.add_argument("--fetch-only", action="store_true", help="no move, read or category")
    args = parser.parse_args(argv)

    class Where:
        url, ca_file, tenant = args.url, args.ca_file, args.tenant

    mb = mailbox(Where, user=args.user, after=args.after, batch=args.batch)  # type: ignore[arg-type]

    async def run() -> dict:
        session = GraphSession(mb)
        try:
            await session.open()
            ledger = Keys()
            base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            cpu, wall = time.process_time(), time.perf_counter()
            await drain(session, ledger, acknowledge=not args.fetch_only)
            return {
                "messages": len(ledger.rows),
                "repeats": ledger.repeats,
                "bytes": ledger.bytes_seen,
                "base_kib": base,
                "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "cpu_s": time.process_time() - cpu,
                "wall_s": time.perf_counter() - wall,
                "requests_retried": session.client.throttled,
            }
        finally:
            await session.close()

    print(json.dumps(asyncio.run(run())))


if __name__ == "__main__":
    main()
