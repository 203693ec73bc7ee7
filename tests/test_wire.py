"""Stage-one results survive the trip from a parsing worker to the database's process."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

import pytest

from triage.core.pipeline import analyse
from triage.core.values import by_position

from .conftest import FIXTURES


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.eml")))
def test_every_fixture_analysis_round_trips_equal(name, rules):
    analysis = analyse((FIXTURES / name).read_bytes(), name, rules)
    assert pickle.loads(pickle.dumps(analysis)) == analysis


def test_a_field_outside_the_constructor_is_refused():
    with pytest.raises(TypeError, match="every field must be an __init__ argument"):

        @by_position
        @dataclass(frozen=True, slots=True)
        class Odd:
            a: int
            b: int = field(default=0, init=False)


def test_one_field_classes_round_trip():
    @by_position
    @dataclass(frozen=True, slots=True)
    class One:
        a: tuple[int, ...]

    globals()["One"] = One  # pickle finds classes by name
    One.__qualname__ = "One"
    assert pickle.loads(pickle.dumps(One((1, 2)))) == One((1, 2))


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.eml"))[:8])
def test_replaced_gives_what_dataclasses_replace_gives(name, rules):
    import dataclasses

    from triage.core.decision import Action, Decision
    from triage.core.values import replaced

    analysis = analyse((FIXTURES / name).read_bytes(), name, rules)
    assert replaced(analysis, source="other", raw=b"x") == dataclasses.replace(
        analysis, source="other", raw=b"x"
    )
    assert replaced(analysis) == analysis
    d = Decision(name, Action.TICKET, "k", "m", email=analysis.email)
    changed = replaced(d, action=Action.APPEND, reasons=("r",), ticket="T-000001")
    assert changed == dataclasses.replace(
        d, action=Action.APPEND, reasons=("r",), ticket="T-000001"
    )
    assert changed.email is analysis.email and d.action == Action.TICKET


def test_replaced_refuses_what_replace_would_refuse_or_skip():
    from triage.core.decision import Action, Decision
    from triage.core.values import replaced

    with pytest.raises(TypeError, match="no field 'nope'"):
        replaced(Decision("s", Action.TICKET, "k", "m"), nope=1)

    @dataclass(frozen=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            if self.a < 0:
                raise ValueError(self.a)

    with pytest.raises(TypeError, match="__post_init__"):
        replaced(Checked(1), a=2)
