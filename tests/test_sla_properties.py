"""Properties of deadlines over the shipped policies and calendars (hypothesis)."""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from triage.core import sla
from triage.core.sla.calendars import to_us
from triage.core.sla.notation import zone_named

RULES = Path(__file__).resolve().parent.parent / "rules" / "sla"
POLICIES = sla.load_policies(RULES)
ZONES = ("UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Australia/Sydney")
CELLS = [(p, plan, rank) for p in POLICIES.values() for plan in p.plans for rank in p.labels]
CALENDARS = sorted({(name, cal_name) for name, p in POLICIES.items() for cal_name in p.calendars})
START = datetime(2024, 1, 1, tzinfo=UTC)
SPAN_MIN = 4 * 366 * 24 * 60  # arrivals over 2024-2027, DST changes included

instants = st.integers(0, SPAN_MIN * 60).map(lambda s: START + timedelta(seconds=s))
cells = st.sampled_from(CELLS)
zones = st.sampled_from(ZONES)
calendars = st.sampled_from(CALENDARS)
minutes = st.integers(1, 80 * 60).map(lambda m: m * 60_000_000)

FAST = settings(max_examples=200, deadline=None)


def in_open_time_or_at_an_end(cal, zone, us: int) -> bool:
    tl = cal.timeline(zone, us, us)
    i = bisect_right(tl.starts, us) - 1
    return i >= 0 and (us < tl.ends[i] or us == tl.ends[i])


@FAST
@given(cells, instants, zones)
def test_deadline_is_never_before_arrival(cell, at, tz):
    p, plan, rank = cell
    d = sla.due(p, plan, rank, at, tz)
    assert d.due is None or d.due >= at
    assert len(d.walk) <= 12


@FAST
@given(calendars, zones, instants, minutes, minutes)
def test_adding_a_then_b_equals_adding_a_plus_b(calendar, tz, at, a, b):
    name, cal_name = calendar
    cal = POLICIES[name].calendars[cal_name]
    zone = zone_named(cal.zone or tz, "test")
    t = to_us(at)
    first, _ = cal.add_open(zone, t, a)
    twice, _ = cal.add_open(zone, first, b)
    once, _ = cal.add_open(zone, t, a + b)
    assert twice == once


@FAST
@given(cells, instants, zones)
def test_positive_deadline_lies_in_open_time_or_at_an_interval_end(cell, at, tz):
    p, plan, rank = cell
    d = sla.due(p, plan, rank, at, tz)
    target = p.plan(plan).targets[rank]
    if d.due is None or target.amount == 0:
        return
    cal = target.calendar
    zone = zone_named(cal.zone or tz, "test")
    assert in_open_time_or_at_an_end(cal, zone, to_us(d.due))


@FAST
@given(cells, instants, st.integers(0, 10 * 24 * 3600), zones)
def test_later_arrival_never_gives_an_earlier_deadline(cell, at, later_s, tz):
    p, plan, rank = cell
    first = sla.due(p, plan, rank, at, tz).due
    second = sla.due(p, plan, rank, at + timedelta(seconds=later_s), tz).due
    if first is not None:
        assert second >= first


@FAST
@given(cells, instants, zones)
def test_progress_reaches_one_at_the_deadline(cell, at, tz):
    p, plan, rank = cell
    d = sla.due(p, plan, rank, at, tz)
    got = sla.progress(p, plan, rank, at, d.due or at, tz)
    if d.due is None:
        assert got is None
    else:
        assert abs(got - 1.0) < 1e-9


def brute_force_add(cal, zone, t: int, amount: int) -> int:
    """An independent oracle: step minute by minute through local wall time."""
    minute = 60_000_000
    need, u = amount // minute, t
    while True:
        local = (START + timedelta(microseconds=u - to_us(START))).astimezone(zone)
        o, m = local.toordinal(), local.hour * 60 + local.minute
        if any(o in s.ordinals(local.year) for s in cal.opened):
            is_open = True
        elif any(o in s.ordinals(local.year) for s in cal.closed):
            is_open = False
        else:
            today, yesterday = cal.weekly[(o + 6) % 7], cal.weekly[(o + 5) % 7]
            is_open = any(s <= m < e for s, e in today) or any(
                s <= m + 1440 < e for s, e in yesterday
            )
        if is_open:
            need -= 1
            if need == 0:
                return u + minute
        u += minute


@settings(max_examples=60, deadline=None)
@given(
    calendars,
    zones,
    st.integers(0, SPAN_MIN).map(lambda m: START + timedelta(minutes=m)),
    st.integers(1, 20 * 60).map(lambda m: m * 60_000_000),
)
def test_timeline_agrees_with_a_minute_by_minute_walk(calendar, tz, at, amount):
    name, cal_name = calendar
    cal = POLICIES[name].calendars[cal_name]
    zone = zone_named(cal.zone or tz, "test")
    got, _ = cal.add_open(zone, to_us(at), amount)
    assert got == brute_force_add(cal, zone, to_us(at), amount)
