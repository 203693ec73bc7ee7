"""Instants are written one way ("2026-03-10T14:30:00Z") and read back as the same instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from triage import instants
from triage.errors import InstantError, TriageError

BERLIN_WINTER = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2026, 3, 10, 14, 30, tzinfo=UTC), "2026-03-10T14:30:00Z"),
        (datetime(2026, 3, 10, 15, 30, tzinfo=BERLIN_WINTER), "2026-03-10T14:30:00Z"),
        (datetime(2026, 3, 10, 14, 30, 0, 250000, tzinfo=UTC), "2026-03-10T14:30:00.250000Z"),
    ],
)
def test_iso_is_utc_with_z_and_keeps_fractions(value, text):
    assert instants.iso(value) == text


def test_iso_seconds_drops_the_fraction_people_do_not_read():
    value = datetime(2026, 3, 10, 15, 30, 5, 999999, tzinfo=BERLIN_WINTER)
    assert instants.iso_seconds(value) == "2026-03-10T14:30:05Z"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2026-03-10T14:30:00Z", datetime(2026, 3, 10, 14, 30, tzinfo=UTC)),
        ("2026-03-10T15:30:00+01:00", datetime(2026, 3, 10, 14, 30, tzinfo=UTC)),
        (" 2026-03-10T09:30:00-05:00 ", datetime(2026, 3, 10, 14, 30, tzinfo=UTC)),
    ],
)
def test_parse_reads_any_zone_as_the_utc_instant(text, value):
    parsed = instants.parse(text)
    assert parsed == value and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "problem", "fix"),
    [
        ("2026-03-10T14:30:00", "'2026-03-10T14:30:00' has no time zone", "give one, e.g."),
        ("2026-03-10", "'2026-03-10' has no time zone", "give one, e.g."),
        ("next tuesday", "'next tuesday' is not ISO 8601", "e.g. 2026-03-10T09:30:00Z"),
    ],
)
def test_parse_refuses_a_time_without_a_zone_or_no_time_at_all(text, problem, fix):
    with pytest.raises(InstantError) as raised:
        instants.parse(text)
    assert raised.value.problem == problem and raised.value.fix.startswith(fix)
    assert isinstance(raised.value, TriageError) and isinstance(raised.value, ValueError)


def test_a_stored_instant_reads_back_as_the_one_written():
    value = datetime(2026, 3, 10, 14, 30, 0, 123456, tzinfo=UTC)
    assert instants.stored(instants.iso(value)) == value
    assert instants.stored(instants.iso_seconds(value)) == value.replace(microsecond=0)


def test_a_stored_instant_without_a_zone_is_read_as_utc_not_the_machines_zone():
    assert instants.stored("2026-03-10T14:30:00") == datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
    with pytest.raises(ValueError):
        instants.stored("garbage")


def test_the_command_line_refuses_a_time_without_a_zone(tmp_path):
    from click.testing import CliRunner

    from triage.cli import cli

    db = tmp_path / "none.db"
    result = CliRunner().invoke(cli, ["tickets", "--db", str(db), "--now", "2026-03-10 14:30"])
    assert result.exit_code == 2
    assert "'2026-03-10 14:30' has no time zone; give one, e.g." in result.output
