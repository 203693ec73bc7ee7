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
