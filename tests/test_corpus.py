"""Real mail written by others (../shared/corpus): robots filtered, people never.

The files are used exactly as found: read as bytes, never rewritten.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from triage.core.message import Email

from .conftest import CORPUS, corpus_rows, needs_corpus

ROWS = corpus_rows()
IDS = [r["file"] for r in ROWS] or ["absent"]
pytestmark = needs_corpus


@pytest.mark.parametrize("row", ROWS or [None], ids=IDS)
def test_label_decides_filtering(row, rules):
    email = Email.from_bytes((CORPUS / row["file"]).read_bytes())
    hit = rules.filters.first_match(email)
    if row["label"] == "human":
        assert hit is None, f"human mail filtered by {hit.rule.id}: {hit.why}"
    else:
        assert hit is not None, f"{row['label']} not filtered: {row['why']}"


@pytest.mark.parametrize(
    "row",
    [r for r in ROWS if r["label"] != "human"] or [None],
    ids=lambda r: r["file"] if r else "absent",
)
def test_structural_rules_alone_catch_every_robot(row, rules):
    """Without the documented list, the structural signals still catch every non-human message."""
    structural = dataclasses.replace(
        rules.filters, rules=tuple(r for r in rules.filters.rules if not r.id.startswith("sow-"))
    )
    email = Email.from_bytes((CORPUS / row["file"]).read_bytes())
    assert structural.first_match(email) is not None, row["why"]


def test_corpus_is_complete():
    assert len(ROWS) == 154
    assert {r["label"] for r in ROWS} == {"bounce", "autoreply", "human", "notification"}


def test_every_corpus_message_parses(rules):
    for row in ROWS:
        Email.from_bytes((CORPUS / row["file"]).read_bytes())


def test_whole_corpus_through_replay_every_human_message_is_one_ticket(tmp_path):
    """End to end, in manifest order: people get tickets, robots get neither ticket nor reply."""
    import json
    import subprocess
    import sys

    from .conftest import ROOT

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "triage.cli",
            "--log-level",
            "warning",
            "replay",
            "--db",
            str(tmp_path / "c.db"),
            "--json",
            "--now",
            "2026-03-10T14:30:00Z",
            str(CORPUS),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=True,
    )
    out = {
        Path(o["source"]).relative_to(CORPUS).as_posix(): o
        for o in map(json.loads, proc.stdout.splitlines())
    }
    assert len(out) == len(ROWS)
    for row in ROWS:
        o = out[row["file"]]
        if row["label"] == "human":
            assert o["action"] in ("ticket", "append"), (row["file"], o)
        else:
            assert o["action"] in ("filtered", "duplicate"), (row["file"], o)
            assert o["auto_reply"] is False
