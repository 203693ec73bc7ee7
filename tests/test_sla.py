"""SLA engine edge cases, errors, rank parsing, walk and progress.

Each expected instant is worked out by hand in the comment beside it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from triage.core import sla

RULES = Path(__file__).resolve().parent.parent / "rules" / "sla"
POLICIES = sla.load_policies(RULES)
CW, MSP, CU, CS, HD = (
    POLICIES[n]
    for n in ("connectwise", "msp-p1-p6", "controlup", "connectsoft", "connectwise-helpdesk")
)
NY, BER, CHI = "America/New_York", "Europe/Berlin", "America/Chicago"


def local(zone: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone))


def due(policy, plan, label, at, tz):
    return sla.due(policy, plan, policy.rank_of(label), at, tz).due


def write_policy(tmp_path: Path, body: str, name: str = "custom") -> sla.Policy:
    (tmp_path / f"{name}.toml").write_text(body, encoding="utf-8")
    return sla.load_policies(tmp_path)[name]


OFFICE = """
[policy]
labels = ["P1", "P2", "P3", "P4"]
levels = { 1 = "P1", 2 = "P2", 3 = "P3", 4 = "P4" }
default_plan = "office"

[[holidays.us]]
country = "US"
names = ["Labor Day", "Memorial Day"]

[calendars.office]
open = ["Mon-Fri 08:00-17:00"]
closed = ["us"]

[calendars.short-friday]
open = ["Mon-Thu 09:00-17:00", "Fri 09:00-13:00"]

[plans.office]
calendar = "office"
P1 = { respond = "1h" }
P2 = { respond = "3 business days" }
P3 = { respond = "4 business days", calendar = "short-friday" }
P4 = { respond = "1h30m" }
"""


@pytest.fixture
def office(tmp_path):
    return write_policy(tmp_path, OFFICE)


# --------------------------------------------------------------------------- the brief's rules


def test_friday_16_plus_1h_is_friday_17_not_monday(office):
    # 08:00-17:00: one open hour left on Friday; the deadline is the interval's end.
    at = local(NY, 2025, 6, 13, 16, 0)
    assert due(office, None, "P1", at, NY) == local(NY, 2025, 6, 13, 17, 0)


def test_basic_friday_13_plus_4h_is_friday_17(office):
    assert due(CW, "basic", "P1", local(NY, 2025, 6, 13, 13, 0), NY) == local(
        NY, 2025, 6, 13, 17, 0
    )


def test_helpdesk_business_hours_friday_16_plus_2h_is_friday_18():
    assert due(HD, "business-hours", "P3", local(CHI, 2025, 6, 13, 16, 0), CHI) == local(
        CHI, 2025, 6, 13, 18, 0
    )


def test_monday_10_plus_3_business_days_is_thursday_10():
    # msp P4 (8x5, 09:00-17:00): Tue, Wed, Thu -> Thu 2025-06-12 10:00
    assert due(MSP, None, "P4", local(BER, 2025, 6, 9, 10, 0), BER) == local(
        BER, 2025, 6, 12, 10, 0
    )


def test_saturday_12_plus_3_business_days_is_thursday_opening():
    # Next opening Mon 2025-06-16 09:00; Tue, Wed, Thu -> Thu 09:00
    assert due(MSP, None, "P4", local(BER, 2025, 6, 14, 12, 0), BER) == local(
        BER, 2025, 6, 19, 9, 0
    )


def test_business_day_that_closes_earlier_gives_its_close(office):
    # short-friday: Mon 15:00 + 4 business days = Tue, Wed, Thu, Fri; Friday closes 13:00
    assert due(office, None, "P3", local(NY, 2025, 6, 9, 15, 0), NY) == local(
        NY, 2025, 6, 13, 13, 0
    )
    # Mon 12:00 + 4 -> Fri 12:00, open that day: unchanged
    assert due(office, None, "P3", local(NY, 2025, 6, 9, 12, 0), NY) == local(
        NY, 2025, 6, 13, 12, 0
    )


def test_three_business_days_over_a_holiday_weekend(office):
    # Fri 2025-08-29 10:00; Sat/Sun closed, Mon 2025-09-01 Labor Day closed;
    # Tue 2, Wed 3, Thu 4 -> Thu 2025-09-04 10:00
    assert due(office, None, "P2", local(NY, 2025, 8, 29, 10, 0), NY) == local(
        NY, 2025, 9, 4, 10, 0
    )


def test_hours_over_a_holiday_weekend(office):
    # Fri 2025-05-23 16:30 + 1h30m: 30 min Friday, Memorial Day Mon 26 closed, Tue 08:00 + 1h
    assert due(office, None, "P4", local(NY, 2025, 5, 23, 16, 30), NY) == local(
        NY, 2025, 5, 27, 9, 0
    )


def test_zero_is_the_arrival_instant_even_outside_hours():
    at = datetime(2025, 6, 14, 3, 4, 5, 678901, tzinfo=UTC)  # a Saturday night
    d = sla.due(MSP, None, 1, at, BER)
    assert d.due == at and d.target == "0"


# --------------------------------------------------------------------------- outside hours


def test_basic_received_friday_evening():
    # Fri 18:00 is closed; Mon 2025-06-16 08:00 + 4h
    assert due(CW, "basic", "P1", local(NY, 2025, 6, 13, 18, 0), NY) == local(
        NY, 2025, 6, 16, 12, 0
    )


def test_basic_received_on_the_weekend():
    assert due(CW, "basic", "P1", local(NY, 2025, 6, 14, 11, 0), NY) == local(
        NY, 2025, 6, 16, 12, 0
    )


def test_basic_received_before_opening():
    assert due(CW, "basic", "P1", local(NY, 2025, 6, 10, 6, 0), NY) == local(NY, 2025, 6, 10, 12, 0)


def test_standard_24x5_friday_night_runs_into_monday():
    # Fri 20:00 to 24:00 = 4h, Mon 00:00 + 20h
    assert due(CW, "standard", "P3", local(NY, 2025, 6, 13, 20, 0), NY) == local(
        NY, 2025, 6, 16, 20, 0
    )


def test_controlup_business_hours_are_utc_whatever_the_tz():
    # Sat 2025-06-14 12:00 UTC: closed until Mon 06:00 UTC; + 8h -> Mon 14:00 UTC
    at = local("UTC", 2025, 6, 14, 12, 0)
    for tz in ("UTC", "Asia/Tokyo", "America/Los_Angeles"):
        assert due(CU, "pro", "2 - High", at, tz) == local("UTC", 2025, 6, 16, 14, 0)


def test_controlup_urgent_ultimate_counts_the_weekend():
    at = local("UTC", 2025, 6, 14, 12, 0)
    assert due(CU, "ultimate", "1 - Urgent", at, "UTC") == local("UTC", 2025, 6, 14, 14, 0)


def test_customer_time_zone_moves_the_basic_window():
    # 14:00 UTC Tuesday = 07:00 in Los Angeles: opens 08:00 PDT, + 4h = 12:00 PDT
    at = local("UTC", 2025, 6, 10, 14, 0)
    la = "America/Los_Angeles"
    assert due(CW, "basic", "P1", at, la) == local(la, 2025, 6, 10, 12, 0)
    # ... and 10:00 EDT in New York: + 4h = 14:00 EDT
    assert due(CW, "basic", "P1", at, NY) == local(NY, 2025, 6, 10, 14, 0)


# --------------------------------------------------------------------------- DST


def test_us_dst_start_24x7_counts_real_hours():
    # Sat 2025-03-08 12:00 EST + 24h; clocks skip 02:00->03:00 on Sunday: 13:00 EDT
    assert due(CW, "premium", "P4", local(NY, 2025, 3, 8, 12, 0), NY) == local(
        NY, 2025, 3, 9, 13, 0
    )


def test_us_dst_start_business_hours_keep_wall_time():
    # Tue 2025-03-04 10:00 EST + 36 basic hours: 7+9+9+9 = 34 by Friday, Mon 10 Mar
    # (now EDT) 08:00 + 2h = 10:00 EDT = 14:00 UTC
    d = due(CW, "basic", "P3", local(NY, 2025, 3, 4, 10, 0), NY)
    assert d == local(NY, 2025, 3, 10, 10, 0) == local("UTC", 2025, 3, 10, 14, 0)


def test_us_dst_end_24x7():
    # Sat 2025-11-01 20:00 EDT (00:00 UTC Sun) + 12h = 12:00 UTC = 07:00 EST (an hour repeats)
    assert due(CW, "premium", "P3", local(NY, 2025, 11, 1, 20, 0), NY) == local(
        NY, 2025, 11, 2, 7, 0
    )


def test_eu_dst_start_24x7():
    # Sat 2025-03-29 18:00 CET + 24h; Sunday 02:00->03:00: 19:00 CEST
    assert due(CW, "premium", "P4", local(BER, 2025, 3, 29, 18, 0), BER) == local(
        BER, 2025, 3, 30, 19, 0
    )


def test_eu_dst_end_24x7():
    # Sat 2025-10-25 18:00 CEST (16:00 UTC) + 12h = 04:00 UTC = 05:00 CET
    assert due(CW, "premium", "P3", local(BER, 2025, 10, 25, 18, 0), BER) == local(
        BER, 2025, 10, 26, 5, 0
    )


def test_eu_dst_business_days_keep_wall_time():
    # Fri 2025-03-28 10:00 CET + 3 bd: Mon 31, Tue 1, Wed 2 Apr -> 10:00 CEST (08:00 UTC)
    d = due(MSP, None, "P4", local(BER, 2025, 3, 28, 10, 0), BER)
    assert d == local(BER, 2025, 4, 2, 10, 0) == local("UTC", 2025, 4, 2, 8, 0)


def test_overnight_calendar_across_eu_dst_end():
    # after-hours in Berlin, Sunday all day: Sun 2025-10-26 01:00 CEST (23:00 UTC Sat)
    # + 2h = 01:00 UTC = 02:00 CET (the 02:00-03:00 hour repeats)
    at = local(BER, 2025, 10, 26, 1, 0)
    assert due(HD, "after-hours", "P1", at, BER) == local("UTC", 2025, 10, 26, 1, 0)


def test_overnight_calendar_across_us_dst_start():
    # after-hours in Chicago: Sun 2025-03-09 01:00 CST (07:00 UTC) + 2h = 09:00 UTC = 04:00 CDT
    at = local(CHI, 2025, 3, 9, 1, 0)
    assert due(HD, "after-hours", "P1", at, CHI) == local(CHI, 2025, 3, 9, 4, 0)
    # Fri 2025-03-07 16:00 CST: opens 17:00, + 2h = 19:00 CST
    assert due(HD, "after-hours", "P1", local(CHI, 2025, 3, 7, 16, 0), CHI) == local(
        CHI, 2025, 3, 7, 19, 0
    )


# --------------------------------------------------------------------------- overnight and holidays


def test_after_hours_morning_tail_then_evening():
    # Tue 08:00 CDT: open until 09:00 (1h), reopens 17:00: + 1h = 18:00
    assert due(HD, "after-hours", "P2", local(CHI, 2025, 6, 10, 8, 0), CHI) == local(
        CHI, 2025, 6, 10, 18, 0
    )


def test_after_hours_across_midnight():
    # Wed 23:30 + 2h = Thu 01:30 (17:00-09:00 crosses midnight)
    assert due(HD, "after-hours", "P2", local(CHI, 2025, 6, 11, 23, 30), CHI) == local(
        CHI, 2025, 6, 12, 1, 30
    )


def test_after_hours_monday_early_morning_is_open():
    # Mon 2025-06-16 08:30: the Sunday-night interval runs to 09:00 (30 min), then 17:00 + 1h30
    assert due(HD, "after-hours", "P2", local(CHI, 2025, 6, 16, 8, 30), CHI) == local(
        CHI, 2025, 6, 16, 18, 30
    )


def test_after_hours_weekend_all_day():
    assert due(HD, "after-hours", "P2", local(CHI, 2025, 6, 14, 12, 0), CHI) == local(
        CHI, 2025, 6, 14, 14, 0
    )


def test_after_hours_open_all_day_on_thanksgiving():
    # Thu 2025-11-27 is Thanksgiving: opened all day; 10:00 + 2h
    assert due(HD, "after-hours", "P1", local(CHI, 2025, 11, 27, 10, 0), CHI) == local(
        CHI, 2025, 11, 27, 12, 0
    )
    # and the day after (computed in data)
    assert due(HD, "after-hours", "P1", local(CHI, 2025, 11, 28, 10, 0), CHI) == local(
        CHI, 2025, 11, 28, 12, 0
    )
    # an ordinary Thursday 10:00 waits for 17:00
    assert due(HD, "after-hours", "P1", local(CHI, 2025, 11, 20, 10, 0), CHI) == local(
        CHI, 2025, 11, 20, 19, 0
    )


def test_business_hours_closed_on_thanksgiving_and_the_day_after():
    # received on the holiday: Thu 27 and Fri 28 closed, Mon 2025-12-01 08:00 + 2h
    assert due(HD, "business-hours", "P1", local(CHI, 2025, 11, 27, 10, 0), CHI) == local(
        CHI, 2025, 12, 1, 10, 0
    )


def test_business_hours_christmas_eve_and_day():
    # Tue 2025-12-23 17:00: 1h to 18:00; Wed 24 and Thu 25 closed; Fri 26 08:00 + 1h
    assert due(HD, "business-hours", "P1", local(CHI, 2025, 12, 23, 17, 0), CHI) == local(
        CHI, 2025, 12, 26, 9, 0
    )


def test_business_hours_observed_dates_2022():
    # Dec 24 2022 is a Saturday: Christmas Eve observed Fri 23; Christmas (Sunday)
    # observed Mon 26. Thu 22 17:00: 1h, then Tue 27 08:00 + 1h
    assert due(HD, "business-hours", "P1", local(CHI, 2022, 12, 22, 17, 0), CHI) == local(
        CHI, 2022, 12, 27, 9, 0
    )


def test_business_hours_observed_dates_2021():
    # Christmas 2021 (Saturday) observed Fri 24, so Christmas Eve moves to Thu 23;
    # Wed 22 17:30: 30 min, then Mon 27 08:00 + 1h30
    assert due(HD, "business-hours", "P1", local(CHI, 2021, 12, 22, 17, 30), CHI) == local(
        CHI, 2021, 12, 27, 9, 30
    )


def test_business_hours_independence_day_observed_on_friday_2026():
    # July 4 2026 is a Saturday: observed Fri 3. Thu 2 17:30: 30 min, Mon 6 08:00 + 1h30
    assert due(HD, "business-hours", "P1", local(CHI, 2026, 7, 2, 17, 30), CHI) == local(
        CHI, 2026, 7, 6, 9, 30
    )
    # and after-hours is open all that Friday
    assert due(HD, "after-hours", "P1", local(CHI, 2026, 7, 3, 11, 0), CHI) == local(
        CHI, 2026, 7, 3, 13, 0
    )


def test_new_years_day_2022_observed_on_friday_2021_12_31():
    # Jan 1 2022 is a Saturday, observed Fri 2021-12-31: Thu 30 17:00 + 2h -> 1h, Mon 3 Jan 09:00
    assert due(HD, "business-hours", "P1", local(CHI, 2021, 12, 30, 17, 0), CHI) == local(
        CHI, 2022, 1, 3, 9, 0
    )


def test_holiday_dates_from_the_rules():
    cal = HD.calendars["business-hours"]
    got = [str(d) for d in cal.closed[0].dates(2025)]
    assert got == [
        "2025-01-01",
        "2025-05-26",
        "2025-07-04",
        "2025-09-01",
        "2025-11-27",
        "2025-11-28",
        "2025-12-24",
        "2025-12-25",
    ]


# --------------------------------------------------------------------------- no deadline


def test_user_scheduled_has_no_deadline():
    d = sla.due(MSP, None, MSP.rank_of("P6"), local(BER, 2025, 6, 10, 10, 0), BER)
    assert d.due is None and d.target == "none" and d.label == "P6" and d.calendar == "8x5"
    assert "no deadline" in d.walk[0]
    assert (
        sla.progress(
            MSP, None, 6, local(BER, 2025, 6, 10, 10, 0), local(BER, 2025, 7, 1, 0, 0), BER
        )
        is None
    )


def test_best_effort_has_no_deadline():
    d = sla.due(CS, "basic", 1, local(BER, 2025, 6, 10, 10, 0), BER)
    assert d.due is None and d.walk and len(d.walk) == 1


# --------------------------------------------------------------------------- priorities


@pytest.mark.parametrize(
    "policy,text,rank",
    [
        (CW, "P2", 2),
        (CW, "p2", 2),
        (CW, "Priority 3", 3),
        (MSP, "P6", 6),
        (MSP, "global outage", 1),
        (MSP, "P5", 5),
        (CU, "1 - Urgent", 1),
        (CU, "1-urgent", 1),
        (CU, "4 - LOW", 4),
        (CU, "P2", 2),
        (CU, "Severity1", 1),
        (CS, "Severity 1", 1),
        (CS, "severity 4", 4),
        (CS, "P3", 3),
        (CS, "critical", 1),
        (HD, "P4", 4),
    ],
)
def test_rank_of(policy, text, rank):
    assert policy.rank_of(text) == rank


def test_deadline_fields():
    d = sla.due(CU, "enterprise", 3, local("UTC", 2025, 6, 10, 10, 0), "Europe/Paris")
    assert (d.policy, d.plan, d.label, d.rank, d.calendar, d.target) == (
        "controlup",
        "enterprise",
        "3 - Normal",
        3,
        "business-hours",
        "8h",
    )
    assert d.due == datetime(2025, 6, 10, 18, 0, tzinfo=UTC) and d.due.tzinfo is UTC


# --------------------------------------------------------------------------- walk


def test_walk_lists_intervals_and_is_bounded():
    d = sla.due(CW, "basic", 4, local(NY, 2025, 6, 10, 10, 0), NY)
    assert len(d.walk) <= 10
    assert d.walk[0] == "P4 on plan basic: 72h on calendar basic-8x5 (America/New_York)"
    assert d.walk[1] == "open Tue 2025-06-10 10:00 EDT → 17:00: +7h00m = 7h00m"
    assert d.walk[5] == "… 2 more open intervals: +18h00m = 52h00m"
    assert d.walk[-2] == "open Fri 2025-06-20 08:00 EDT → 10:00: +2h00m = 72h00m"
    assert d.walk[-1] == "due Fri 2025-06-20 10:00 EDT"


def test_walk_for_business_days_outside_hours():
    d = sla.due(MSP, None, 4, local(BER, 2025, 6, 14, 12, 0), BER)
    assert d.walk[1:] == (
        "arrived Sat 2025-06-14 12:00 CEST outside open time; counting from the next opening Mon 2025-06-16 09:00 CEST",
        "business days counted: Tue 06-17, Wed 06-18, Thu 06-19",
        "due Thu 2025-06-19 09:00 CEST",
    )


def test_walk_over_years_stays_bounded(tmp_path):
    p = write_policy(tmp_path, OFFICE.replace('respond = "1h30m"', 'respond = "2000h"'))
    d = sla.due(p, None, 4, local(NY, 2025, 6, 10, 10, 0), NY)
    assert len(d.walk) <= 10 and any(line.startswith("… ") for line in d.walk)


# --------------------------------------------------------------------------- progress


def test_progress_hours():
    rec = local(NY, 2025, 6, 10, 10, 0)
    assert sla.progress(CW, "basic", 1, rec, local(NY, 2025, 6, 10, 13, 0), NY) == 0.75
    assert sla.progress(CW, "basic", 1, rec, local(NY, 2025, 6, 10, 14, 0), NY) == 1.0
    assert sla.progress(CW, "basic", 1, rec, rec, NY) == 0.0


def test_progress_skips_closed_time():
    # Fri 16:00 basic P1 (4h): 1h Friday + Mon 08:00-09:00 = 2h of 4h by Monday 09:00
    rec = local(NY, 2025, 6, 13, 16, 0)
    assert sla.progress(CW, "basic", 1, rec, local(NY, 2025, 6, 16, 9, 0), NY) == 0.5


def test_progress_business_days():
    # Mon 10:00 + 3 bd = Thu 10:00: open time allowed = 7+8+8+1 = 24h; by Tue 17:00, 15h
    rec = local(BER, 2025, 6, 9, 10, 0)
    assert sla.progress(MSP, None, 4, rec, local(BER, 2025, 6, 10, 17, 0), BER) == 15 / 24


def test_progress_immediate():
    rec = local(BER, 2025, 6, 9, 10, 0)
    assert sla.progress(MSP, None, 1, rec, rec, BER) == 1.0


# --------------------------------------------------------------------------- errors


def test_missing_respond_message(tmp_path):
    body = OFFICE.replace('P2 = { respond = "3 business days" }\n', "")
    body += '\n[plans.office.P2]\nseed = "3 Business day response"\n'
    (tmp_path / "custom.toml").write_text(body, encoding="utf-8")
    with pytest.raises(sla.SlaError) as err:
        sla.load_policies(tmp_path)
    assert str(err.value) == (
        f"{tmp_path / 'custom.toml'}: [plans.office.P2] 'respond' is missing\n"
        '  fix: add respond = "4h"'
    )


def test_malformed_duration(tmp_path):
    with pytest.raises(sla.SlaError) as err:
        write_policy(tmp_path, OFFICE.replace('respond = "1h30m"', 'respond = "4 hourz"'))
    msg = str(err.value)
    assert "custom.toml: [plans.office.P4] 'respond' = '4 hourz' is not a duration" in msg
    assert '"4h"' in msg and '"3 business days"' in msg and '"none"' in msg


def test_sla_error_is_value_error():
    assert issubclass(sla.SlaError, ValueError)


def test_unknown_policy():
    with pytest.raises(sla.SlaError) as err:
        POLICIES["nope"]
    assert "no policy 'nope'" in str(err.value)
    assert "connectsoft, connectwise, connectwise-helpdesk, controlup, msp-p1-p6" in str(err.value)
    assert str(RULES) in str(err.value)


def test_unknown_plan():
    with pytest.raises(sla.SlaError) as err:
        sla.due(CW, "gold", 1, local(NY, 2025, 6, 10, 10, 0), NY)
    assert str(err.value) == (
        f"{RULES / 'connectwise.toml'}: [plans] has no plan 'gold'\n"
        "  fix: use one of premium, standard, basic, screenconnect"
    )


def test_plan_given_to_a_policy_without_plans():
    with pytest.raises(sla.SlaError, match=re.escape("msp-p1-p6.toml: [targets]")):
        sla.due(MSP, "standard", 1, local(NY, 2025, 6, 10, 10, 0), NY)


def test_unknown_priority():
    with pytest.raises(sla.SlaError) as err:
        CU.rank_of("P9")
    msg = str(err.value)
    assert "controlup.toml: [policy] labels has no priority 'P9'" in msg
    assert "P1..P4" in msg and "'1 - Urgent'" in msg and "'4 - Low'" in msg
    with pytest.raises(sla.SlaError, match="has no rank 7"):
        sla.due(CW, "basic", 7, local(NY, 2025, 6, 10, 10, 0), NY)
    with pytest.raises(sla.SlaError, match="levels has no level 5"):
        CW.label_for_level(5)


def test_unknown_time_zone_argument():
    with pytest.raises(sla.SlaError) as err:
        sla.due(CW, "basic", 1, local(NY, 2025, 6, 10, 10, 0), "Mars/Olympus")
    msg = str(err.value)
    assert "connectwise.toml: [tz] 'Mars/Olympus' is not a known time zone" in msg
    assert "IANA" in msg
    # the pinned-UTC calendar still checks the argument
    with pytest.raises(sla.SlaError):
        sla.due(CU, "pro", 1, local(NY, 2025, 6, 10, 10, 0), "Mars/Olympus")


def test_unknown_time_zone_in_a_file(tmp_path):
    with pytest.raises(sla.SlaError) as err:
        write_policy(
            tmp_path,
            OFFICE.replace("[calendars.office]\n", '[calendars.office]\nzone = "Mars/Base"\n'),
        )
    assert "custom.toml: [calendars.office] 'zone' = 'Mars/Base' is not a known time zone" in str(
        err.value
    )


def test_never_open_calendar(tmp_path):
    with pytest.raises(sla.SlaError) as err:
        write_policy(tmp_path, OFFICE.replace('open = ["Mon-Fri 08:00-17:00"]', "open = []"))
    assert "custom.toml: [calendars.office] is never open\n  fix: give it weekly hours" in str(
        err.value
    )


def test_calendar_open_only_long_ago_is_never_open_at_runtime(tmp_path):
    body = OFFICE.replace('open = ["Mon-Fri 08:00-17:00"]', 'open = []\nopened = ["2001-01-01"]')
    p = write_policy(tmp_path, body)
    with pytest.raises(
        sla.SlaError, match=r"\[calendars.office\] has no open time within 10 years"
    ):
        sla.due(p, None, 1, local(NY, 2025, 6, 10, 10, 0), NY)


def test_naive_arrival_is_rejected():
    with pytest.raises(sla.SlaError, match="no time zone"):
        sla.due(CW, "basic", 1, datetime(2025, 6, 10, 10, 0), NY)


@pytest.mark.parametrize(
    "old,new,expected",
    [
        (
            'open = ["Mon-Fri 08:00-17:00"]',
            'open = ["Mon-Fry 08:00-17:00"]',
            "[calendars.office] 'open' = 'Mon-Fry 08:00-17:00': 'fry' is not a day",
        ),
        ('open = ["Mon-Fri 08:00-17:00"]', 'open = ["Mon-Fri 8am-5pm"]', "is not an open interval"),
        (
            'names = ["Labor Day", "Memorial Day"]',
            'names = ["Labour Day"]',
            "[holidays.us] 'Labour Day' is not a US holiday",
        ),
        ('country = "US"', 'country = "XX"', "[holidays.us] 'country' = 'XX' is not known"),
        (
            'closed = ["us"]',
            'closed = ["uk"]',
            "[calendars.office.closed] 'uk' is neither a date nor a holiday set\n  fix: use ISO dates (YYYY-MM-DD) or holiday sets: us",
        ),
        (
            'default_plan = "office"',
            'default_plan = "gold"',
            "[policy] 'default_plan' = 'gold' is not a plan\n  fix: use one of office",
        ),
        (
            'P4 = { respond = "1h30m" }',
            'P4 = { respnd = "1h30m" }',
            "[plans.office.P4] 'respnd' is not a known key\n  fix: use one of respond, calendar, seed",
        ),
        (
            'P4 = { respond = "1h30m" }',
            "",
            "[plans.office] has no target for 'P4'\n  fix: add [plans.office.P4] with respond = \"4h\"",
        ),
        (
            'P2 = { respond = "3 business days" }',
            'P2 = { respond = "3 days" }',
            "'3 days' is not a duration",
        ),
        (
            'calendar = "office"\nP1',
            'calendar = "ofice"\nP1',
            "[plans.office] 'calendar' = 'ofice' is not a calendar\n  fix: use one of office, short-friday",
        ),
        (
            'levels = { 1 = "P1", 2 = "P2", 3 = "P3", 4 = "P4" }',
            'levels = { 1 = "P1", 2 = "P2" }',
            "[policy.levels] keys ['1', '2'] must be exactly 1, 2, 3, 4",
        ),
        ("[policy]", "[policy]\nlabels = [", "[-] cannot be read as TOML"),
        (
            "[policy]",
            "[policy]\n[x]",
            "[-] 'x' is not a known key\n  fix: use one of policy, holidays, calendars, plans, targets",
        ),
    ],
)
def test_bad_files_name_file_key_and_fix(tmp_path, old, new, expected):
    assert old in OFFICE
    with pytest.raises(sla.SlaError) as err:
        write_policy(tmp_path, OFFICE.replace(old, new, 1))
    msg = str(err.value)
    assert msg.startswith(str(tmp_path / "custom.toml") + ": [")
    assert expected in msg
    assert "fix:" in msg


def test_empty_directory(tmp_path):
    with pytest.raises(sla.SlaError, match="holds no policy files"):
        sla.load_policies(tmp_path)


def test_duration_grammar():
    h = 3_600_000_000
    assert sla.parse_duration("4h", "x") == ("hours", 4 * h)
    assert sla.parse_duration("4 Hours", "x") == ("hours", 4 * h)
    assert sla.parse_duration("1h30m", "x") == ("hours", 90 * 60_000_000)
    assert sla.parse_duration("30 minutes", "x") == ("hours", 30 * 60_000_000)
    assert sla.parse_duration("1 business day", "x") == ("business days", 1)
    assert sla.parse_duration("0", "x") == ("hours", 0)
    assert sla.parse_duration("none", "x") == ("none", 0)
    for bad in ("", "h", "4 hourz", "-1h", "1.5h", "1 week", 4):
        with pytest.raises(sla.SlaError):
            sla.parse_duration(bad, "x")
