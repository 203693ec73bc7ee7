"""Every cell of every seed table, at one fixed instant inside open hours per policy.

Expected instants are worked out by hand from the seed's numbers and hours
(the comment on each row shows the arithmetic).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from triage.core import sla

RULES = Path(__file__).resolve().parent.parent / "rules" / "sla"
POLICIES = sla.load_policies(RULES)


def local(zone: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone))


NY, BER, LON, CHI = "America/New_York", "Europe/Berlin", "Europe/London", "America/Chicago"

# connectwise: Tuesday 2025-06-10 10:00 EDT, customer in New York.
CW_AT = local(NY, 2025, 6, 10, 10, 0)
# msp-p1-p6: Tuesday 2025-06-10 10:00 CEST, provider in Berlin.
MSP_AT = local(BER, 2025, 6, 10, 10, 0)
# controlup: Tuesday 2025-06-10 20:00 UTC (business hours 06:00-00:00 UTC); the
# ticket's zone is Tokyo, which the UTC-pinned calendar must ignore.
CU_AT = local("UTC", 2025, 6, 10, 20, 0)
# connectsoft: Tuesday 2025-06-10 15:00 BST, business hours 09:00-17:00.
CS_AT = local(LON, 2025, 6, 10, 15, 0)
# connectwise-helpdesk: Tuesday 2025-06-10 17:00 CDT (open on all three plans).
HD_AT = local(CHI, 2025, 6, 10, 17, 0)

CASES = [
    # policy, plan, label, arrival, tz, target, expected due (None: no deadline)
    # --- connectwise premium: 24x7
    ("connectwise", "premium", "P1", CW_AT, NY, "1h", local(NY, 2025, 6, 10, 11, 0)),
    ("connectwise", "premium", "P2", CW_AT, NY, "4h", local(NY, 2025, 6, 10, 14, 0)),
    ("connectwise", "premium", "P3", CW_AT, NY, "12h", local(NY, 2025, 6, 10, 22, 0)),
    ("connectwise", "premium", "P4", CW_AT, NY, "24h", local(NY, 2025, 6, 11, 10, 0)),
    # --- connectwise standard: 24/5, Mon 00:00 - Fri 24:00
    ("connectwise", "standard", "P1", CW_AT, NY, "2h", local(NY, 2025, 6, 10, 12, 0)),
    ("connectwise", "standard", "P2", CW_AT, NY, "8h", local(NY, 2025, 6, 10, 18, 0)),
    ("connectwise", "standard", "P3", CW_AT, NY, "24h", local(NY, 2025, 6, 11, 10, 0)),
    ("connectwise", "standard", "P4", CW_AT, NY, "36h", local(NY, 2025, 6, 11, 22, 0)),
    # --- connectwise basic: 08:00-17:00 Mon-Fri (9 h a day)
    ("connectwise", "basic", "P1", CW_AT, NY, "4h", local(NY, 2025, 6, 10, 14, 0)),
    # Tue 7h (10-17) + Wed 9h = 16h, Thu 08:00 + 8h
    ("connectwise", "basic", "P2", CW_AT, NY, "24h", local(NY, 2025, 6, 12, 16, 0)),
    # Tue 7 + Wed 9 + Thu 9 + Fri 9 = 34h, Mon 08:00 + 2h
    ("connectwise", "basic", "P3", CW_AT, NY, "36h", local(NY, 2025, 6, 16, 10, 0)),
    # 34h by Fri, Mon-Thu 36h more = 70h, Fri 08:00 + 2h
    ("connectwise", "basic", "P4", CW_AT, NY, "72h", local(NY, 2025, 6, 20, 10, 0)),
    # --- connectwise screenconnect: 2 / 8 / 24 / 36 h on the Standard 24/5 hours
    ("connectwise", "screenconnect", "P1", CW_AT, NY, "2h", local(NY, 2025, 6, 10, 12, 0)),
    ("connectwise", "screenconnect", "P2", CW_AT, NY, "8h", local(NY, 2025, 6, 10, 18, 0)),
    ("connectwise", "screenconnect", "P3", CW_AT, NY, "24h", local(NY, 2025, 6, 11, 10, 0)),
    ("connectwise", "screenconnect", "P4", CW_AT, NY, "36h", local(NY, 2025, 6, 11, 22, 0)),
    # --- msp-p1-p6 (no plans)
    ("msp-p1-p6", None, "P1", MSP_AT, BER, "0", local(BER, 2025, 6, 10, 10, 0)),
    ("msp-p1-p6", None, "P2", MSP_AT, BER, "30m", local(BER, 2025, 6, 10, 10, 30)),
    ("msp-p1-p6", None, "P3", MSP_AT, BER, "4h", local(BER, 2025, 6, 10, 14, 0)),
    # Wed, Thu, Fri -> Fri 10:00
    ("msp-p1-p6", None, "P4", MSP_AT, BER, "3 business days", local(BER, 2025, 6, 13, 10, 0)),
    # Wed, Thu, Fri, Mon, Tue -> Tue 10:00
    ("msp-p1-p6", None, "P5", MSP_AT, BER, "5 business days", local(BER, 2025, 6, 17, 10, 0)),
    ("msp-p1-p6", None, "P6", MSP_AT, BER, "none", None),
    # --- controlup ultimate (20:00 UTC: 4 business hours left on Tuesday)
    (
        "controlup",
        "ultimate",
        "1 - Urgent",
        CU_AT,
        "Asia/Tokyo",
        "2h",
        local("UTC", 2025, 6, 10, 22, 0),
    ),
    (
        "controlup",
        "ultimate",
        "2 - High",
        CU_AT,
        "Asia/Tokyo",
        "4h",
        local("UTC", 2025, 6, 11, 0, 0),
    ),
    (
        "controlup",
        "ultimate",
        "3 - Normal",
        CU_AT,
        "Asia/Tokyo",
        "4h",
        local("UTC", 2025, 6, 11, 0, 0),
    ),
    # 4h Tue, Wed 06:00 + 4h
    (
        "controlup",
        "ultimate",
        "4 - Low",
        CU_AT,
        "Asia/Tokyo",
        "8h",
        local("UTC", 2025, 6, 11, 10, 0),
    ),
    # --- controlup enterprise
    (
        "controlup",
        "enterprise",
        "1 - Urgent",
        CU_AT,
        "Asia/Tokyo",
        "4h",
        local("UTC", 2025, 6, 11, 0, 0),
    ),
    (
        "controlup",
        "enterprise",
        "2 - High",
        CU_AT,
        "Asia/Tokyo",
        "4h",
        local("UTC", 2025, 6, 11, 0, 0),
    ),
    (
        "controlup",
        "enterprise",
        "3 - Normal",
        CU_AT,
        "Asia/Tokyo",
        "8h",
        local("UTC", 2025, 6, 11, 10, 0),
    ),
    (
        "controlup",
        "enterprise",
        "4 - Low",
        CU_AT,
        "Asia/Tokyo",
        "12h",
        local("UTC", 2025, 6, 11, 14, 0),
    ),
    # --- controlup pro
    ("controlup", "pro", "1 - Urgent", CU_AT, "Asia/Tokyo", "4h", local("UTC", 2025, 6, 11, 0, 0)),
    ("controlup", "pro", "2 - High", CU_AT, "Asia/Tokyo", "8h", local("UTC", 2025, 6, 11, 10, 0)),
    ("controlup", "pro", "3 - Normal", CU_AT, "Asia/Tokyo", "8h", local("UTC", 2025, 6, 11, 10, 0)),
    ("controlup", "pro", "4 - Low", CU_AT, "Asia/Tokyo", "12h", local("UTC", 2025, 6, 11, 14, 0)),
    # --- connectsoft basic: best effort
    ("connectsoft", "basic", "Severity 1", CS_AT, LON, "none", None),
    ("connectsoft", "basic", "Severity 2", CS_AT, LON, "none", None),
    ("connectsoft", "basic", "Severity 3", CS_AT, LON, "none", None),
    ("connectsoft", "basic", "Severity 4", CS_AT, LON, "none", None),
    # --- connectsoft standard: 4 business hours: Tue 15-17 = 2h, Wed 09:00 + 2h
    ("connectsoft", "standard", "Severity 1", CS_AT, LON, "4h", local(LON, 2025, 6, 11, 11, 0)),
    (
        "connectsoft",
        "standard",
        "Severity 2",
        CS_AT,
        LON,
        "1 business day",
        local(LON, 2025, 6, 11, 15, 0),
    ),
    ("connectsoft", "standard", "Severity 3", CS_AT, LON, "none", None),
    ("connectsoft", "standard", "Severity 4", CS_AT, LON, "none", None),
    # --- connectsoft premium: Critical 1h around the clock
    ("connectsoft", "premium", "Severity 1", CS_AT, LON, "1h", local(LON, 2025, 6, 10, 16, 0)),
    ("connectsoft", "premium", "Severity 2", CS_AT, LON, "4h", local(LON, 2025, 6, 11, 11, 0)),
    (
        "connectsoft",
        "premium",
        "Severity 3",
        CS_AT,
        LON,
        "1 business day",
        local(LON, 2025, 6, 11, 15, 0),
    ),
    (
        "connectsoft",
        "premium",
        "Severity 4",
        CS_AT,
        LON,
        "2 business days",
        local(LON, 2025, 6, 12, 15, 0),
    ),
    # --- connectwise-helpdesk 24x7: 17:00 + 2h
    ("connectwise-helpdesk", "24x7", "P1", HD_AT, CHI, "2h", local(CHI, 2025, 6, 10, 19, 0)),
    ("connectwise-helpdesk", "24x7", "P2", HD_AT, CHI, "2h", local(CHI, 2025, 6, 10, 19, 0)),
    ("connectwise-helpdesk", "24x7", "P3", HD_AT, CHI, "2h", local(CHI, 2025, 6, 10, 19, 0)),
    ("connectwise-helpdesk", "24x7", "P4", HD_AT, CHI, "2h", local(CHI, 2025, 6, 10, 19, 0)),
    # --- after-hours: opens 17:00, 17:00 + 2h
    ("connectwise-helpdesk", "after-hours", "P1", HD_AT, CHI, "2h", local(CHI, 2025, 6, 10, 19, 0)),
    ("connectwise-helpdesk", "after-hours", "P2", HD_AT, CHI, "2h", local(CHI, 2025, 6, 10, 19, 0)),
    ("connectwise-helpdesk", "after-hours", "P3", HD_AT, CHI, "2h", local(CHI, 2025, 6, 10, 19, 0)),
    ("connectwise-helpdesk", "after-hours", "P4", HD_AT, CHI, "2h", local(CHI, 2025, 6, 10, 19, 0)),
    # --- business-hours 08:00-18:00: 1h Tuesday, Wed 08:00 + 1h
    (
        "connectwise-helpdesk",
        "business-hours",
        "P1",
        HD_AT,
        CHI,
        "2h",
        local(CHI, 2025, 6, 11, 9, 0),
    ),
    (
        "connectwise-helpdesk",
        "business-hours",
        "P2",
        HD_AT,
        CHI,
        "2h",
        local(CHI, 2025, 6, 11, 9, 0),
    ),
    (
        "connectwise-helpdesk",
        "business-hours",
        "P3",
        HD_AT,
        CHI,
        "2h",
        local(CHI, 2025, 6, 11, 9, 0),
    ),
    (
        "connectwise-helpdesk",
        "business-hours",
        "P4",
        HD_AT,
        CHI,
        "2h",
        local(CHI, 2025, 6, 11, 9, 0),
    ),
]


@pytest.mark.parametrize(
    "policy,plan,label,arrival,tz,target,expected",
    CASES,
    ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES],
)
def test_cell(policy, plan, label, arrival, tz, target, expected):
    p = POLICIES[policy]
    d = sla.due(p, plan, p.rank_of(label), arrival, tz)
    assert (d.due, d.target, d.label, d.plan) == (expected, target, label, plan)
    if expected is not None:
        assert d.due.tzinfo is not None and d.due.utcoffset().total_seconds() == 0


def test_every_cell_of_every_policy_is_in_the_table():
    covered = {(c[0], c[1], c[2]) for c in CASES}
    shipped = {
        (name, plan, label)
        for name, p in POLICIES.items()
        for plan in p.plans
        for label in p.labels.values()
    }
    assert covered == shipped
    assert len(CASES) == 58


SEED_CELLS = {
    # seed file -> the response cells, verbatim, in the seed's order
    "connectwise-initial-response-slos.txt": [
        "1 Hour",
        "2 Hours",
        "4 Hours",
        "4 Hours",
        "8 Hours",
        "24 Hours",
        "12 Hours",
        "24 Hours",
        "36 Hours",
        "24 Hours",
        "36 Hours",
        "72 Hours",
    ],
    "controlup-sla.txt": [
        "2 Hours, 24 hours a day, 7 days a week",
        "4 Business Hours",
        "4 Business Hours",
        "8 Business Hours",
        "4 Business Hours",
        "4 Business Hours",
        "8 Business Hours",
        "12 Business Hours",
        "4 Business Hours",
        "8 Business Hours",
        "8 Business Hours",
        "12 Business Hours",
    ],
}


def test_connectwise_seed_cells_match_the_file():
    """The `seed` of each premium/standard/basic cell, row by row, is the page's table."""
    p = POLICIES["connectwise"]
    got = [
        p.plans[plan].targets[rank].seed
        for rank in (1, 2, 3, 4)
        for plan in ("premium", "standard", "basic")
    ]
    assert got == SEED_CELLS["connectwise-initial-response-slos.txt"]
    sc = [p.plans["screenconnect"].targets[r].seed for r in (1, 2, 3, 4)]
    assert sc == ["2 Hours", "8 Hours", "24 Hours", "36 Hours"]


def test_controlup_seed_cells_match_the_file():
    p = POLICIES["controlup"]
    got = [
        p.plans[plan].targets[rank].seed
        for plan in ("ultimate", "enterprise", "pro")
        for rank in (1, 2, 3, 4)
    ]
    assert got == SEED_CELLS["controlup-sla.txt"]


@pytest.mark.skipif(
    not (RULES.parent.parent.parent / "shared" / "seeds").is_dir(),
    reason="seeds not beside checkout",
)
def test_seed_cells_appear_in_the_seed_documents():
    seeds = RULES.parent.parent.parent / "shared" / "seeds"
    for name, cells in SEED_CELLS.items():
        text = (seeds / name).read_text(encoding="utf-8")
        for cell in cells:
            assert cell in text, (name, cell)
    msp = (seeds / "msp-sla-p1-p6.txt").read_text(encoding="utf-8")
    for target in POLICIES["msp-p1-p6"].plans[None].targets.values():
        response, availability = target.seed.split(" / ")
        assert response in msp and availability in msp


LEVELS = [
    ("connectwise", ["P1", "P2", "P3", "P4"]),
    ("msp-p1-p6", ["P2", "P3", "P4", "P5"]),
    ("controlup", ["1 - Urgent", "2 - High", "3 - Normal", "4 - Low"]),
    ("connectsoft", ["Severity 1", "Severity 2", "Severity 3", "Severity 4"]),
    ("connectwise-helpdesk", ["P1", "P2", "P3", "P4"]),
]


@pytest.mark.parametrize("policy,labels", LEVELS)
def test_project_levels_map_to_labels(policy, labels):
    p = POLICIES[policy]
    assert [p.label_for_level(level) for level in (1, 2, 3, 4)] == labels


def test_policy_shapes():
    assert POLICIES["connectwise"].default_plan == "standard"
    assert list(POLICIES["connectwise"].plans) == ["premium", "standard", "basic", "screenconnect"]
    assert list(POLICIES["msp-p1-p6"].plans) == [None]
    assert list(POLICIES["controlup"].plans) == ["ultimate", "enterprise", "pro"]
    assert list(POLICIES["connectsoft"].plans) == ["basic", "standard", "premium"]
    assert list(POLICIES["connectwise-helpdesk"].plans) == ["24x7", "after-hours", "business-hours"]
    assert POLICIES["controlup"].labels[1] == "1 - Urgent"
    assert POLICIES["controlup"].calendars["business-hours"].zone == "UTC"


def test_default_plan_is_used_for_none():
    p = POLICIES["connectwise"]
    d = sla.due(p, None, 2, CW_AT, NY)
    assert (d.plan, d.calendar, d.due) == (
        "standard",
        "standard-24x5",
        local(NY, 2025, 6, 10, 18, 0),
    )
