"""`triage report --html`: the report with charts, from a database path, read-only.

The edge of the report: opens the database read-only, reads the response table (the same
tally as `tracking.report`) and the series in one snapshot, and hands the values to the pure
drawing in `triage.desk.charts`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from triage.desk import charts, objectives, series
from triage.desk.readonly import connect
from triage.service import tracking


def read_report(conn, now: datetime, since: datetime | None = None) -> tracking.Report:
    """What `tracking.report` returns, from a read-only connection (no Store: it would write)."""
    rows = conn.execute(
        # tracking.COLUMNS, written out (SQL here is literal text; a test compares them)
        "SELECT id, number, status, priority, level, policy, plan, timezone,"
        " response_due, created_at, first_response_at FROM tickets ORDER BY id"
    ).fetchall()
    per_priority, total = tracking.tally((tracking.from_row(r) for r in rows), now, since)
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
        conn.execute("BEGIN")  # the table and the charts from one snapshot
        report = read_report(conn, now, since)
        values = series.read(conn, report, targets, timezone)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return charts.html_report(report, values, title)


def shipped_objectives() -> dict[str, objectives.Objective]:
    from triage.config import shipped_rules

    return objectives.load(shipped_rules() / objectives.FILE)
