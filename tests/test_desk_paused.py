"""The report, the metrics and the page's queue know a pending ticket whose clock is paused,
and that resolved and closed tickets are not open.

The demo database (tests/support/desk.py) is changed by the real command line: two tickets
put pending (their policy, a copy of the shipped connectwise one, pauses the clock meanwhile)
before their deadlines, the breached one put pending after its deadline, one resolved and one
closed. Then the figures are read at instants where the paused tickets would be at risk or
breached if their clocks ran.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT
from tests.support.desk import demo_db
from triage.cli import cli
from triage.core import sla
from triage.desk import metrics, report
from triage.desk.plugin import Desk, functions
from triage.store.desk import canned
from triage.store.desk.readonly import connect

NOW = datetime(2026, 3, 11, 14, 0, tzinfo=UTC)  # a Wednesday; the demo's mail arrived now
PAUSED_AT = "2026-03-11T14:30:00Z"
AT_RISK_TIME = NOW + timedelta(minutes=96)  # T-000013 (P1, 2 h) would have used 80 %
LATE = NOW + timedelta(hours=5)  # T-000013 (due 16:00) and T-000018 (due 18:00) would be late


@pytest.fixture(scope="module")
def desk(tmp_path_factory) -> tuple[Path, Path]:
    """(database, rules dir whose connectwise policy pauses while pending)."""
    folder = tmp_path_factory.mktemp("paused")
    demo = demo_db(folder, now=NOW, search=False)
    rules = folder / "rules"
    shutil.copytree(ROOT / "rules", rules)
    policy = rules / "sla" / "connectwise.toml"
    text = policy.read_text(encoding="utf-8")
    policy.write_text(text.replace("[policy]\n", "[policy]\npause_when_pending = true\n", 1))
    config = folder / "triage.toml"
    config.write_text(f'[store]\ndb = "{demo.path}"\n[rules]\ndir = "{rules}"\n')
    for number, state in [
        ("T-000013", "pending"),  # P1 standard, due 16:00: paused before its deadline
        ("T-000018", "pending"),  # P2 premium, due 18:00: paused before its deadline
        ("T-000001", "pending"),  # breached at 12:00, then paused: stays breached
        ("T-000003", "resolved"),
        ("T-000004", "closed"),
    ]:
        done = CliRunner().invoke(
            cli, ["ticket", "status", number, state, "--at", PAUSED_AT, "--config", str(config)]
        )
        assert done.exit_code == 0, done.output
    with sqlite3.connect(demo.path) as conn:
        paused = conn.execute(
            "SELECT number FROM tickets WHERE paused_at IS NOT NULL ORDER BY number"
        ).fetchall()
    assert paused == [("T-000001",), ("T-000013",), ("T-000018",)]
    return demo.path, rules


def _samples(text: str) -> dict:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_paused_tickets_neither_breached_nor_at_risk(desk):
    db, rules = desk
    policies = sla.load_policies(rules / "sla")
    late = _samples(metrics.text(db, policies, clock=lambda: LATE))
    # without the pauses: T-000001, T-000013 and T-000018 breached
    assert late[("triage_tickets_breached_open", ())] == 1
    risky = _samples(metrics.text(db, policies, clock=lambda: AT_RISK_TIME))
    assert risky[("triage_tickets_at_risk_open", ())] == 0  # T-000013 would be at 80 %
    assert risky[("triage_tickets_breached_open", ())] == 1
    opened = {k[1][0][1]: v for k, v in late.items() if k[0] == "triage_tickets_open"}
    # pending is open; T-000003 (resolved) and T-000004 (closed) are not: P3 was 17
    assert opened == {"P1": 2, "P2": 2, "P3": 15, "P4": 1}


def test_the_report_counts_a_paused_ticket_open_in_time(desk):
    db, _rules = desk
    conn = connect(db)
    try:
        got = report.read_report(conn, LATE)
    finally:
        conn.close()
    rows = {r.priority: r for r in got.rows}
    assert (rows["P1"].breached, rows["P1"].pending) == (1, 1)  # T-000001; T-000013 paused
    assert (rows["P2"].breached, rows["P2"].pending) == (0, 2)  # T-000018 paused, T-000014
    printed = CliRunner().invoke(
        cli, ["report", "--json", "--db", str(db), "--now", "2026-03-11T19:00:00Z"]
    )
    assert printed.exit_code == 0, printed.output
    shown = {r["priority"]: r for r in json.loads(printed.stdout)["priorities"]}
    assert (shown["P1"]["open_breached"], shown["P1"]["open_in_time"]) == (1, 1)
    assert (shown["P2"]["open_breached"], shown["P2"]["open_in_time"]) == (0, 2)


def _page(db: Path, rules: Path, sql: str, now: datetime) -> list[dict]:
    conn = connect(db)
    try:
        desk = Desk(sla.load_policies(rules / "sla"), clock=lambda: now)
        for name, (arity, fn) in functions(desk).items():
            conn.create_function(name, arity, fn)
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def test_the_queue_and_at_risk_views_show_paused_tickets_as_paused(desk):
    db, rules = desk
    queue = _page(db, rules, canned.queue_sql(0.75), LATE)
    states = {r["ticket"]: (r["state"], r["status"], r["time_left"]) for r in queue}
    assert states["T-000001"][:2] == ("BREACHED", "pending")
    assert states["T-000013"] == ("paused", "pending", None)
    assert states["T-000018"] == ("paused", "pending", None)
    assert "T-000003" not in states and "T-000004" not in states  # resolved, closed
    assert [r["ticket"] for r in queue if r["state"] == "BREACHED"] == ["T-000001"]
    at_risk = _page(db, rules, canned.at_risk_sql(0.75), AT_RISK_TIME)
    assert at_risk == []  # T-000013 would be at 80 % of its 2 hours
