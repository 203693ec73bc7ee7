"""Every command has help with an example and is documented; errors are clear."""

from __future__ import annotations

import zipfile

import click
import pytest
from click.testing import CliRunner

from triage.cli import cli

from .conftest import ROOT


def commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out = []
    for name, cmd in group.commands.items():
        full = f"{prefix}{name}"
        if isinstance(cmd, click.Group):
            out.extend(commands(cmd, full + " "))
        else:
            out.append((full, cmd))
    return out


ALL = commands(cli)


@pytest.mark.parametrize(("name", "cmd"), ALL, ids=[n for n, _ in ALL])
def test_command_has_help_with_an_example_and_is_documented(name, cmd):
    result = CliRunner().invoke(cli, [*name.split(), "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    docs = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert f"triage {name}" in docs


def test_check_passes_on_shipped_rules():
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("ok")


def test_check_names_file_line_and_fix_for_a_broken_rule(tmp_path):
    rules = tmp_path / "rules"
    import shutil

    shutil.copytree(ROOT / "rules", rules)
    text = (rules / "filters.toml").read_text(encoding="utf-8")
    (rules / "filters.toml").write_text(
        text.replace('test = "begins_with"', 'test = "startswith"', 1), encoding="utf-8"
    )
    config = tmp_path / "triage.toml"
    config.write_text(f'[rules]\ndir = "{rules}"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", "--config", str(config)])
    assert result.exit_code != 0
    assert (
        f"{rules / 'filters.toml'}:" in result.output
        and "startswith" in result.output
        and "fix:" in result.output
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            '[sla]\ntimezone = "Mars/Olympus"\n',
            "[sla.timezone] 'Mars/Olympus' is not a known time zone",
        ),
        ('[contacts]\nunknown = "maybe"\n', "[contacts.unknown]"),
        ("[colours]\nx = 1\n", "[colours] is not a known section"),
        ("[store]\ndb = 5\n", "[store.db] must be a str"),
        ('[sla]\npolicy = "nope"\n', "nope"),
    ],
)
def test_bad_config_is_refused_with_key_and_fix(tmp_path, text, needle):
    config = tmp_path / "triage.toml"
    config.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", "--config", str(config)])
    assert result.exit_code != 0
    assert needle in result.output and "fix" in result.output


def test_wheel_ships_the_rules(tmp_path):
    """An installed wheel finds rules/ without a checkout beside it."""
    import subprocess
    import sys

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("triage-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for rule in (ROOT / "rules").rglob("*.toml"):
        assert f"triage/rules/{rule.relative_to(ROOT / 'rules')}" in names


def test_a_policy_without_plans_works_with_no_plan_configured(tmp_path):
    config = tmp_path / "triage.toml"
    config.write_text('[sla]\npolicy = "msp-p1-p6"\n', encoding="utf-8")
    assert CliRunner().invoke(cli, ["check", "--config", str(config)]).exit_code == 0
    config.write_text('[sla]\npolicy = "msp-p1-p6"\nplan = "standard"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", "--config", str(config)])
    assert (
        result.exit_code != 0
        and "[sla.plan] 'standard' is not a plan of msp-p1-p6" in result.output
    )


def test_filtered_lists_spam_apart_and_replay_json_carries_the_category(tmp_path):
    """Spam verdicts are filtered (no ticket, no acknowledgement) but listed by category."""
    import json
    import shutil

    from .conftest import FIXTURES

    mail = tmp_path / "mail"
    mail.mkdir()
    for name in (
        "66-spam-flag-spamassassin.eml",
        "69-spam-scl-exchange.eml",
        "01-plain-text-request.eml",
        "52-list-unsubscribe-newsletter.eml",
    ):
        shutil.copy(FIXTURES / name, mail / name)
    db = tmp_path / "t.db"
    runner = CliRunner()
    result = runner.invoke(
        cli, ["replay", "--db", str(db), "--json", "--now", "2026-03-10T14:30:00Z", str(mail)]
    )
    assert result.exit_code == 0, result.output
    out = {
        json.loads(line)["source"].rsplit("/", 1)[-1]: json.loads(line)
        for line in result.output.splitlines()
        if line.startswith("{")
    }
    spam = out["66-spam-flag-spamassassin.eml"]
    assert (spam["action"], spam["reason"], spam["category"], spam["auto_reply"]) == (
        "filtered",
        "spam-flag",
        "spam",
        False,
    )
    assert out["01-plain-text-request.eml"]["category"] is None
    listed = runner.invoke(cli, ["filtered", "--db", str(db), "--category", "spam", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert sorted(r["reason"] for r in rows) == ["spam-flag", "spam-scl"]
    everything = runner.invoke(cli, ["filtered", "--db", str(db), "--json"])
    assert len(everything.output.splitlines()) == 3  # the newsletter too, not the request
    wrong = runner.invoke(cli, ["filtered", "--db", str(db), "--category", "spamm"])
    assert wrong.exit_code != 0 and "spam" in wrong.output
