"""Properties of the paused response clock (hypothesis), over the shipped policies' calendars.

A pending ticket on a policy with `pause_when_pending` has its deadline moved, when it
leaves pending, by the open time that passed while it waited: the open time left to
answer it is what it was when the pause began.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from triage.core import lifecycle, sla
from triage.core.sla.calendars import to_us
from triage.core.sla.notation import HOURS, zone_named

from .test_sla_properties import POLICIES, ZONES

CELLS = [
    (p, plan, rank)
    for p in POLICIES.values()
    for plan in p.plans
    for rank in p.labels
    if p.plan(plan).targets[rank].kind == HOURS and p.plan(plan).targets[rank].amount > 0
]
START = datetime(2024, 1, 1, tzinfo=UTC)
SPAN_S = 3 * 366 * 24 * 3600

instants = st.integers(0, SPAN_S).map(lambda s: START + timedelta(seconds=s))
spans = st.integers(0, 14 * 24 * 3600).map(lambda s: timedelta(seconds=s))
cells = st.sampled_from(CELLS)
zones = st.sampled_from(ZONES)

FAST = settings(max_examples=150, deadline=None)


def _setup(cell, at, tz):
    p, plan, rank = cell
    label = p.labels[rank]
    due = sla.due(p, plan, rank, at, tz).due
    assert due is not None
    cal = p.plan(plan).targets[rank].calendar
    zone = zone_named(cal.zone or tz, "test")
    return p, plan, label, due, cal, zone


@FAST
@given(cells, instants, spans, spans, zones)
def test_the_open_time_left_is_the_same_after_the_pause(cell, at, into, waited, tz):
    p, plan, label, due, cal, zone = _setup(cell, at, tz)
    paused = at + into
    assume(paused < due)
    resumed = paused + waited
    moved = lifecycle.resumed_due(p, plan, label, tz, due, paused, resumed)
    assert moved is not None and moved >= due
    left_before = cal.open_between(zone, to_us(paused), to_us(due))
    left_after = cal.open_between(zone, to_us(resumed), to_us(moved))
    assert left_after == left_before


@FAST
@given(cells, instants, spans, spans, spans, zones)
def test_two_pauses_back_to_back_move_it_as_one(cell, at, into, first, second, tz):
    p, plan, label, due, _cal, _zone = _setup(cell, at, tz)
    paused = at + into
    assume(paused < due)
    middle, resumed = paused + first, paused + first + second
    once = lifecycle.resumed_due(p, plan, label, tz, due, paused, resumed)
    step = lifecycle.resumed_due(p, plan, label, tz, due, paused, middle)
    assume(step is not None and middle < step)
    twice = lifecycle.resumed_due(p, plan, label, tz, step, middle, resumed)
    assert twice == once


@FAST
@given(cells, instants, spans, spans, zones)
def test_a_deadline_passed_before_the_pause_never_moves(cell, at, after, waited, tz):
    p, plan, label, due, _cal, _zone = _setup(cell, at, tz)
    paused = due + after
    assert lifecycle.resumed_due(p, plan, label, tz, due, paused, paused + waited) == due
