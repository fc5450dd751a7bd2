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


def test_a_scheduled_downgrade_grants_the_new_allowance_from_its_renewal_on() -> None:
    from datetime import UTC, datetime

    from app.domain.model import BillingInterval, Plan
    from app.domain.subscriptions import ScheduledChange, SubscriptionTerms
    from app.domain.wallet import Wallet, renewals_due

    start = datetime(2026, 1, 31, tzinfo=UTC)
    feb = datetime(2026, 2, 28, tzinfo=UTC)
    terms = SubscriptionTerms(
        Plan.PRO,
        BillingInterval.MONTHLY,
        start,
        4000,
        scheduled=ScheduledChange(Plan.STARTER, 1000, datetime(2026, 3, 31, tzinfo=UTC)),
    )
    renewals, _ = renewals_due(Wallet(4000, 0, 0, feb), terms, datetime(2026, 4, 1, tzinfo=UTC))
    assert [r.granted for r in renewals] == [4000, 1000]
    assert terms.as_of(datetime(2026, 3, 31, tzinfo=UTC)).plan is Plan.STARTER
    assert terms.as_of(feb).plan is Plan.PRO
