"""A process's clock may run off the system clock only in tests (process tests of time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from app.clock import OffsetClock, SystemClock, clock_for
from app.settings import Settings


def test_a_clock_offset_is_refused_outside_tests() -> None:
    with pytest.raises(ValidationError, match="CREDITGATE_ENV=test only"):
        Settings(_env_file=None, env="development", clock_offset_seconds=-60)


def test_an_offset_clock_lags_the_system_clock_by_its_offset() -> None:
    assert isinstance(clock_for(0), SystemClock)
    lagging = clock_for(-3600)
    assert isinstance(lagging, OffsetClock)
    # an hour behind, whatever the scheduler does between the two readings (well under 30 min)
    assert datetime.now(UTC) - lagging.now() > timedelta(minutes=30)
