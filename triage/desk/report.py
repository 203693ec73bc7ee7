"""`triage report --html`: the report with charts, from a database path, read-only.

The edge of the report: opens the database read-only, reads the response table (the same
tally as `triage.service.tracking.report`) and the series in one snapshot, and hands the values to the pure
drawing in `triage.desk.charts`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from triage.core.sla import tracking
from triage.desk import charts, objectives, series
from triage.store.desk import queries
from triage.store.desk.readonly import connect


def read_report(conn, now: datetime, since: datetime | None = None) -> tracking.Report:
    """What `triage.service.tracking.report` returns, from a read-only connection (no Store: it would write)."""
    rows = queries.tickets(conn)
    per_priority, total = tracking.tally(rows, now, since)
    return tracking.Report(now, since, per_priority, total)


def html(
    db: Path,
    now: datetime,
    since: datetime | None = None,
    targets: Mapping[str, objectives.Objective] | None = None,
    timezone: str = "UTC",
    title: str = "triage report",
) -> str:
    """The report for the tickets of `db` created at or after `since`, as one HTML file.

    `targets`: policy -> Objective (`objectives.load(rules_dir / objectives.FILE, ...)`);
    None reads the shipped rules' objectives.toml.
    """
    if targets is None:
        targets = shipped_objectives()
    conn = connect(db)
    try:
        with queries.one_snapshot(conn):  # the table and the charts from one instant
            report = read_report(conn, now, since)
            values = series.read(conn, report, targets, timezone)
    finally:
        conn.close()
    return charts.html_report(report, values, title)


def shipped_objectives() -> dict[str, objectives.Objective]:
    from triage.config import shipped_rules

    return objectives.load(shipped_rules() / objectives.FILE)
