"""A batch's per-message savepoints keep their statement journal in memory, not in a file.

Each message is written in a savepoint; SQLite journals the pages it changes (as they
were) in memory up to 64 KiB and then in a temporary file, deleted at once but held open
and written through the batch. A message's rows touch more than that, so replay wrote
three pages in four to such a file. The store keeps that journal in memory.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from triage.core.pipeline import analyse
from triage.engine.batch import write_batch
from triage.store.sqlite import Store

from .conftest import human

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)


def _deleted_files() -> list[str]:
    """Files this process holds open that are deleted (SQLite's temporary files are)."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, closed by now
            continue
        if target.endswith(" (deleted)"):
            held.append(target)
    return held


def test_a_batch_of_tickets_is_written_with_no_temporary_file(tmp_path: Path, rules):
    store = Store(tmp_path / "t.db")
    analyses = [
        analyse(
            human(
                From=f"Person {n} <p{n}@customer{n % 40}.example>",
                Message_ID=f"<m{n}@customer{n % 40}.example>",
                Subject=f"Request {n}: the VPN drops every hour",
                body="Hello,\n" + f"line {n} of a report that is long enough to matter\n" * 40,
            ),
            f"m{n}.eml",
            rules,
        )
        for n in range(300)
    ]
    before = set(_deleted_files())
    try:
        decisions = write_batch(store, rules, analyses, NOW)
        held = set(_deleted_files()) - before
        assert sum(1 for d in decisions if str(d.action) == "ticket") == 300
        assert held == set()
    finally:
        store.rollback()
        store.close()


def test_the_page_cache_holds_a_deep_index_tree(tmp_path):
    """32 MiB of pages, not SQLite's 2 MiB: a store with years in it reads its index trees
    from the cache, batch after batch (bench/bigstore.py measures the rate)."""
    store = Store(tmp_path / "t.db")
    try:
        assert store.conn.execute("PRAGMA cache_size").fetchone()[0] == -32 * 1024
    finally:
        store.close()
