"""rules/objectives.toml: the share of tickets a policy's own document promises within target."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT, SEEDS, needs_seeds
from triage.core import sla
from triage.desk import objectives

RULES = ROOT / "rules"


def test_shipped_objectives_name_only_shipped_policies_and_quote_the_sow():
    policies = sla.load_policies(RULES / "sla")
    got = objectives.load(RULES / objectives.FILE, known=policies)
    assert set(got) == {"connectwise-helpdesk"}
    cw = got["connectwise-helpdesk"]
    assert cw.percent == 70.0
    assert cw.stated
    assert cw.label() == "objective 70 %"


@needs_seeds
def test_the_quoted_sentence_is_in_the_sow_verbatim():
    cw = objectives.load(RULES / objectives.FILE)["connectwise-helpdesk"]
    assert cw.seed in (SEEDS / "connectwise-helpdesk-sow.txt").read_text(encoding="utf-8")


def test_a_policy_without_a_table_holds_every_ticket_to_its_deadline():
    got = objectives.for_policy({}, "connectwise")
    assert (got.percent, got.stated, got.label()) == (
        100.0,
        False,
        "every ticket (no share stated)",
    )


def test_a_missing_file_means_no_objectives(tmp_path: Path):
    assert objectives.load(tmp_path / "objectives.toml") == {}


@pytest.mark.parametrize(
    ("text", "key", "fix"),
    [
        ('[cw]\npercent = "70"\nseed = "x"', "[cw.percent]", "percent = 70"),
        ('[cw]\npercent = 0\nseed = "x"', "[cw.percent]", "0 < percent <= 100"),
        ('[cw]\npercent = 120\nseed = "x"', "[cw.percent]", "0 < percent <= 100"),
        ("[cw]\npercent = true\nseed = 'x'", "[cw.percent]", "percent = 70"),
        ("[cw]\npercent = 70", "[cw.seed]", "quote the sentence"),
        ('[cw]\npercent = 70\nseed = "x"\ntarget = "2h"', "[cw]", "use only"),
        ("cw = 70", "[cw]", "percent = 70"),
        ("[cw\n", "[]", "correct the TOML"),
        ('[typo]\npercent = 70\nseed = "x"', "[typo]", "use one of ['cw']"),
    ],
)
def test_errors_name_the_file_the_key_and_the_fix(tmp_path: Path, text: str, key: str, fix: str):
    path = tmp_path / "objectives.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(objectives.ObjectiveError) as err:
        objectives.load(path, known=["cw"])
    message = str(err.value)
    assert message.startswith(f"{path}: {key} ")
    assert fix in message.split("\n  fix: ", 1)[1]
