"""The one parsing pool: replay has the daemon's time limit per message now.

A message whose parsing never ends (a filter rule that backtracks on its subject) is
quarantined as `timeout` after [daemon] message_timeout, and every other message of the
run goes on; before, replay's own pool waited for it for ever.
"""

from __future__ import annotations

import subprocess
import time

from .conftest import human, rules_with_slow_rule
from .test_replay import lines, triage

NOW = "2026-03-10T14:30:00Z"
POISON = "a" * 40 + "!"  # parses for far longer than any test waits (conftest)


def test_replay_quarantines_a_stuck_message_after_the_time_limit_and_goes_on(tmp_path):
    rules = rules_with_slow_rule(tmp_path)
    config = tmp_path / "triage.toml"
    config.write_text(f'[rules]\ndir = "{rules}"\n\n[daemon]\nmessage_timeout = 1\n')
    mail = tmp_path / "mail"
    mail.mkdir()
    poison = {30, 90}  # one in each of the first two batches of the pool's chunks
    for n in range(100):  # enough for the worker pool (replay parses fewer in-process)
        subject = POISON if n in poison else f"request {n}"
        (mail / f"{n:03}.eml").write_bytes(human(Message_ID=f"<m{n}@x>", Subject=subject))
    started = time.monotonic()
    try:
        out = lines(
            triage(
                "replay", "--config", str(config), "--db", str(tmp_path / "t.db"),
                "--json", "--now", NOW, "--workers", "2", str(mail),
            )
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("replay waited for the stuck message") from exc
    took = time.monotonic() - started
    stuck = [(o["source"].rsplit("/", 1)[1], o["action"], o["reason"]) for o in out]
    assert [s for s in stuck if s[1] != "ticket"] == [
        ("030.eml", "quarantined", "timeout"),
        ("090.eml", "quarantined", "timeout"),
    ]
    assert len(out) == 100
    assert took < 60  # each stuck one costs at most twice the limit, plus a new pool


def test_the_pool_parses_batch_after_batch_and_closes_at_once_leaving_no_worker(rules):
    """The pool's worker-keeping thread sleeps until the pool changes (not at every result
    waiting in the pipe): work still flows batch after batch, and closing wakes it."""
    import asyncio
    import os

    from triage.engine.pool import Pool
    from triage.sources.files import Item

    items = [
        Item(f"m{n}", human(Message_ID=f"<k{n}@x>", Subject=f"request {n}")) for n in range(40)
    ]
    pool = Pool(rules, None, 2)
    pids = [p.pid for p in pool.pool._pool]

    async def run() -> list:
        window = [pool.submit(items[n : n + 8]) for n in range(0, 40, 8)]
        return [a for tasks in window for a in await pool.collect(tasks, 30)]

    try:
        done = asyncio.run(run())
    finally:
        started = time.monotonic()
        pool.close()
        took = time.monotonic() - started
    assert [a.email.message_id for a in done] == [f"<k{n}@x>" for n in range(40)]
    assert took < 5
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"worker {pid} still running after close")
