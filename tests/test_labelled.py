"""The filter rules on labelled real mail written by others (tests/labelled/MANIFEST.csv).

The messages live outside this repository (../shared/labelled, or $TRIAGE_LABELLED);
the manifest names each one's repository, commit, path and git blob id. Floors below
are the figures measured when the rules were written (docs/signals.md): a rule change
that loses recall, or drops a person's mail, fails here.
"""

from __future__ import annotations

import sys
from collections import Counter

import pytest

from .conftest import ROOT
from .outside import git_blob

sys.path.insert(0, str(ROOT / "bench"))
import signals  # noqa: E402  (bench/signals.py: the measuring script shares this code)

ROWS = signals.manifest_rows()
FOLDER = signals.locate()
needs_set = pytest.mark.skipif(
    FOLDER is None,
    reason="the labelled messages are not beside this checkout (../shared/labelled or "
    "$TRIAGE_LABELLED); tests/labelled/MANIFEST.csv says where each comes from",
)
MACHINE_FLOORS = {  # share of each machine category filtered, as measured (goal >= 90 %)
    "bounce": 1.0,
    "fbl": 1.0,
    "autoreply": 1.0,
    "spam-verdict": 1.0,
    "newsletter": 0.94,
    "report": 1.0,
    "transactional": 1.0,
}


def test_manifest_has_150_messages_in_every_category_with_their_sources():
    assert len(ROWS) >= 150
    labels = Counter(r["label"] for r in ROWS)
    assert set(labels) == set(MACHINE_FLOORS) | {"human"}
    for row in ROWS:
        assert row["source_repo"] and len(row["source_commit"]) == 40 and row["source_path"]
        assert row["licence"] and row["why"] and len(row["git_blob"]) == 40
    excluded = {
        "sisimai/set-of-emails",
        "rjbs/Mail-DeliveryStatus-BounceParser",
        "mailgun/talon",
        "bestpractical/rt",
        "mikel/mail",
        "mailgun/flanker",
    }
    assert not {r["source_repo"] for r in ROWS} & excluded
    assert not any(
        word in r["source_repo"].lower()
        for r in ROWS
        for word in ("zammad", "freescout", "flufl", "bounce-handler", "bounce_email")
    )


@needs_set
def test_every_file_is_the_blob_at_its_commit():
    """Never edited: each file's git blob id is the one the manifest recorded."""
    for row in ROWS:
        assert git_blob((FOLDER / row["file"]).read_bytes()) == row["git_blob"], row["file"]


@pytest.fixture(scope="module")
def tallies(rules):
    return signals.measure(FOLDER, rules, ROWS)


@needs_set
def test_no_person_is_dropped(tallies):
    """Not even by an upstream spam verdict: the receiving SpamAssassin's two false positives
    (human/sa-19, human/sa-20: X-Spam-Flag and X-Spam-Status, one verdict, against an Outlook
    X-Mailer) go to review; every other person's mail gets its ticket."""
    human = tallies["human"]
    assert human.filtered == 0, human.misses
    assert human.outcomes["review"] <= 2
    assert human.ticketed >= human.total - 2


@needs_set
@pytest.mark.parametrize("label", sorted(MACHINE_FLOORS))
def test_machine_mail_is_filtered(tallies, label):
    t = tallies[label]
    assert t.filtered / t.total >= MACHINE_FLOORS[label], t.misses


@needs_set
def test_nine_in_ten_machine_messages_are_filtered(tallies):
    machine = [t for label, t in tallies.items() if label != "human"]
    assert sum(t.filtered for t in machine) / sum(t.total for t in machine) >= 0.90
