"""The desk's commands: `triage web`, `triage metrics`, `triage report --html`, and
`triage check` reading rules/objectives.toml. Each is run as a person runs it."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT
from tests.servers import HOST, free_port
from tests.support.browser import needs_chromium, open_browser
from tests.support.desk import demo_db
from triage.cli import cli

NOW = datetime(2026, 3, 11, 14, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_db(tmp_path_factory.mktemp("demo"), now=NOW)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--log-level", "warning", *args])
    return result.exit_code, result.stdout, result.stderr


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


# --------------------------------------------------------------------------- triage metrics


def test_metrics_prints_the_databases_figures_and_writes_the_same_textfile(demo, tmp_path):
    code, out, err = run("metrics", "--db", str(demo.path))
    assert code == 0, err
    printed = samples(out)
    # The command reads the real clock: every unanswered ticket past its deadline by now.
    breached = count(
        demo.path,
        "SELECT COUNT(*) FROM tickets WHERE first_response_at IS NULL"
        " AND julianday(response_due) < julianday('now')",
    )
    assert printed[("triage_tickets_breached_open", ())] == breached >= 1
    filtered = sum(
        v
        for (name, labels), v in printed.items()
        if name == "triage_messages_total" and ("action", "filtered") in labels
    )
    assert filtered == count(demo.path, "SELECT COUNT(*) FROM messages WHERE action = 'filtered'")
    opened = sum(v for (n, _), v in printed.items() if n == "triage_tickets_open")
    assert opened == count(demo.path, "SELECT COUNT(*) FROM tickets")

    target = tmp_path / "triage.prom"
    code, out, err = run("metrics", "--db", str(demo.path), "--textfile", str(target))
    assert (code, out) == (0, ""), err
    written = samples(target.read_text(encoding="utf-8"))
    assert written[("triage_tickets_breached_open", ())] == breached
    assert {k for k in written} == {k for k in printed}
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, renamed


def test_metrics_names_a_missing_database_or_textfile_folder_and_the_fix(demo, tmp_path):
    code, _, out = run("metrics", "--db", str(tmp_path / "typo.db"))
    assert code == 1 and f"{tmp_path / 'typo.db'}: no database here" in out
    assert not (tmp_path / "typo.db").exists()
    target = tmp_path / "nowhere" / "triage.prom"
    code, _, out = run("metrics", "--db", str(demo.path), "--textfile", str(target))
    assert code == 1
    assert f"--textfile {target}: no folder {target.parent}" in out and "fix: " in out


# --------------------------------------------------------------------------- triage report --html


def test_report_html_since_a_date_writes_the_charts(demo, tmp_path):
    target = tmp_path / "report.html"
    code, out, err = run(
        "report", "--db", str(demo.path), "--html", str(target), "--since", "2026-03-11"
    )
    assert code == 0, err
    assert f"report with charts written to {target}" in err
    page = target.read_text(encoding="utf-8")
    assert page.count("<svg") == 4 and "<script" not in page
    # After every ticket was made: a whole report that says there is nothing.
    code, _, err = run(
        "report", "--db", str(demo.path), "--html", str(target), "--since", "2026-03-12"
    )
    assert code == 0, err
    assert "no tickets" in target.read_text(encoding="utf-8")


def test_a_since_date_is_midnight_in_the_configured_time_zone(demo, tmp_path):
    def figures(*args: str) -> dict:
        code, out, err = run(
            "report", "--db", str(demo.path), "--json", "--now", "2026-03-11T15:00:00Z", *args
        )
        assert code == 0, err
        return json.loads(out)

    assert figures("--since", "2026-03-11") == figures("--since", "2026-03-11T00:00:00Z")
    # In Auckland (UTC+13) the 11th began at 11:00 UTC on the 10th.
    config = tmp_path / "triage.toml"
    config.write_text('[sla]\ntimezone = "Pacific/Auckland"\n', encoding="utf-8")
    auckland = figures("--config", str(config), "--since", "2026-03-11")
    assert auckland["since"] == "2026-03-10T11:00:00Z"
    code, out, _ = run("report", "--db", str(demo.path), "--since", "yesterday")
    assert code == 2 and "--since" in out + _


def test_report_html_names_what_is_wrong_and_the_fix(demo, tmp_path):
    target = tmp_path / "nowhere" / "report.html"
    code, _, out = run("report", "--db", str(demo.path), "--html", str(target))
    assert code == 1
    assert f"--html {target}: no folder {target.parent}" in out and "fix: " in out
    code, _, out = run(
        "report", "--db", str(tmp_path / "typo.db"), "--html", str(tmp_path / "r.html")
    )
    assert code == 1 and "no database here" in out
    assert not (tmp_path / "typo.db").exists() and not (tmp_path / "r.html").exists()


@needs_chromium
def test_the_commands_report_renders_in_chromium(demo, tmp_path):
    target = tmp_path / "report.html"
    code, _, err = run("report", "--db", str(demo.path), "--html", str(target))
    assert code == 0, err
    with open_browser(tmp_path) as browser:
        page = browser.new_page()
        page.goto(target.as_uri())
        charts = page.evaluate(
            """() => [...document.querySelectorAll('figure.chart svg')].map(svg => {
                const box = svg.getBoundingClientRect();
                return {width: box.width, shapes: svg.querySelectorAll('path, rect').length};
            })"""
        )
        assert len(charts) == 4
        assert all(c["width"] > 300 and c["shapes"] > 5 for c in charts), charts


# --------------------------------------------------------------------------- triage check


def test_check_names_the_objectives_file_the_key_and_the_fix(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    config = tmp_path / "triage.toml"
    config.write_text(f'[rules]\ndir = "{rules}"\n', encoding="utf-8")
    code, out, _ = run("check", "--config", str(config))
    assert code == 0 and "connectwise-helpdesk 70 %" in out
    (rules / "objectives.toml").write_text(
        '[connectwise-helpdsk]\npercent = 70\nseed = "70% within 2 hours"\n', encoding="utf-8"
    )
    code, _, out = run("check", "--config", str(config))
    assert code == 1
    assert f"{rules / 'objectives.toml'}: [connectwise-helpdsk] is not a policy" in out
    assert "fix: use one of" in out and "'connectwise-helpdesk'" in out


# --------------------------------------------------------------------------- triage web


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--listen", "desk.example:8001"), "is not an IP address"),
        (("--base-url", "desk"), "--base-url: 'desk' must start and end with /"),
    ],
)
def test_web_refuses_a_bad_option_naming_it_and_the_fix(demo, args, expected):
    code, _, out = run("web", "--db", str(demo.path), *args)
    assert code == 1 and expected in out and "fix: " in out


def test_web_names_a_missing_database(tmp_path):
    code, _, out = run("web", "--db", str(tmp_path / "typo.db"))
    assert code == 1 and f"{tmp_path / 'typo.db'}: no database here" in out


def test_web_on_an_address_in_use_says_so_and_exits(demo):
    port = free_port()
    with socket.socket() as taken:
        taken.bind((HOST, port))
        taken.listen(1)
        done = subprocess.run(
            [sys.executable, "-m", "triage.cli", "web", "--db", str(demo.path)]
            + ["--listen", f"{HOST}:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"--listen {HOST}:{port}: cannot listen there" in done.stderr
    assert "fix: choose a free port" in done.stderr


def test_the_daemon_does_not_start_when_its_metrics_address_is_taken(tmp_path):
    port = free_port()
    config = tmp_path / "triage.toml"
    config.write_text(
        f'[store]\ndb = "{tmp_path / "t.db"}"\n[daemon]\nmetrics_listen = "{HOST}:{port}"\n',
        encoding="utf-8",
    )
    with socket.socket() as taken:
        taken.bind((HOST, port))
        taken.listen(1)
        done = subprocess.run(
            [sys.executable, "-m", "triage.cli", "--log-level", "warning", "run"]
            + ["--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"{config}: [daemon] metrics_listen: cannot listen on {HOST}:{port}" in done.stderr
    assert "fix: choose a free port" in done.stderr
