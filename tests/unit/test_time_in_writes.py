"""The acting instant of a write and the refund decision: judged from the account's records."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from app.domain.cycles import cycle_end
from app.domain.errors import InvalidInput
from app.domain.holds import HeldPortion, RecordedCycle, release
from app.domain.model import BillingInterval, Bucket, Plan
from app.domain.subscriptions import SubscriptionTerms, utc_anchor
from app.domain.wallet import Wallet, acting_instant

ANCHOR = datetime(2026, 1, 15, 12, tzinfo=UTC)
RENEWAL = datetime(2026, 2, 15, 12, tzinfo=UTC)
TERMS = SubscriptionTerms(Plan.STARTER, BillingInterval.MONTHLY, ANCHOR, 20, recorded_at=ANCHOR)
# The account once the February renewal was recorded.
RENEWED = Wallet(20, 0, 1, cycle_end(ANCHOR, 1))


def test_a_reading_before_the_recorded_cycle_start_acts_at_that_start() -> None:
    assert acting_instant(RENEWAL - timedelta(seconds=1), RENEWED, TERMS) == RENEWAL


def test_a_reading_inside_the_recorded_cycle_is_used_as_it_is() -> None:
    later = RENEWAL + timedelta(days=3)
    assert acting_instant(later, RENEWED, TERMS) == later


def test_a_reading_before_a_recorded_cancel_or_plan_end_acts_at_it() -> None:
    canceled = replace(TERMS, canceled_at=RENEWAL + timedelta(days=1))
    assert acting_instant(RENEWAL, RENEWED, canceled) == RENEWAL + timedelta(days=1)
    ended = replace(TERMS, canceled_at=ANCHOR + timedelta(days=1))  # ended on Feb 15
    assert acting_instant(ANCHOR, Wallet.empty(), ended) == RENEWAL


def test_an_account_without_a_plan_acts_at_the_reading() -> None:
    assert acting_instant(ANCHOR, Wallet.empty(), None) == ANCHOR


def test_held_credits_of_an_ended_cycle_expire_whatever_the_clock_says() -> None:
    portions = [
        HeldPortion(Bucket.SUBSCRIPTION, 20, cycle=("s", 0)),
        HeldPortion(Bucket.PACK, 60, lot_id="lot", lot_expires_at=RENEWAL),
    ]
    renewed = RecordedCycle("s", 1, cycle_end(ANCHOR, 1))
    assert [r.expires for r in release(portions, renewed)] == [True, True]
    same_cycle = RecordedCycle("s", 0, RENEWAL)
    assert [r.expires for r in release(portions, same_cycle)] == [False, False]
    no_cycle = RecordedCycle("s", None, None)
    assert [r.expires for r in release(portions, no_cycle)] == [True, True]


def test_a_start_is_counted_in_utc_and_an_unrepresentable_one_is_refused() -> None:
    new_york = datetime.fromisoformat("2027-01-30T20:00:00-05:00")
    assert utc_anchor(new_york) == datetime(2027, 1, 31, 1, tzinfo=UTC)
    assert cycle_end(new_york, 0) == datetime(2027, 2, 28, 1, tzinfo=UTC)
    with pytest.raises(InvalidInput) as refused:
        utc_anchor(datetime.fromisoformat("0001-01-01T00:00:00+01:00"))
    assert refused.value.field == "startedAt"
