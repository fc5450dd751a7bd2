"""Cycle k starts at anchor + k calendar months, always counted from the anchor."""

from datetime import UTC, datetime

import pytest

from app.domain.cycles import cycle_end, cycle_index_at, cycle_start


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_a_jan_31_anchor_gives_feb_28_then_mar_31() -> None:
    anchor = utc(2026, 1, 31, 10)
    assert cycle_start(anchor, 1) == utc(2026, 2, 28, 10)
    assert cycle_start(anchor, 2) == utc(2026, 3, 31, 10)
    assert cycle_start(anchor, 13) == utc(2027, 2, 28, 10)


def test_leap_years_give_feb_29() -> None:
    assert cycle_start(utc(2028, 1, 31), 1) == utc(2028, 2, 29)


def test_cycle_index_is_the_cycle_containing_the_moment() -> None:
    anchor = utc(2026, 1, 31, 10)
    assert cycle_index_at(anchor, anchor) == 0
    assert cycle_index_at(anchor, utc(2026, 2, 28, 9, 59)) == 0
    assert cycle_index_at(anchor, utc(2026, 2, 28, 10)) == 1
    assert cycle_index_at(anchor, utc(2026, 3, 31, 9)) == 1
    assert cycle_index_at(anchor, utc(2026, 3, 31, 10)) == 2
    assert cycle_index_at(anchor, utc(2030, 7, 1)) == 53


def test_cycle_end_is_the_next_renewal() -> None:
    anchor = utc(2026, 1, 15)
    assert cycle_end(anchor, 0) == utc(2026, 2, 15)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError):
        cycle_start(datetime(2026, 1, 1), 1)
