"""Subscription credits are spent first, then packs by earliest expiry, oldest purchase first."""

from datetime import UTC, datetime

import pytest

from app.domain.errors import InsufficientCredits
from app.domain.model import Bucket
from app.domain.spending import PackLot, Portion, allocate

EXPIRY = datetime(2026, 2, 15, tzinfo=UTC)


def lot(lot_id: str, remaining: int, day: int, expires: datetime = EXPIRY) -> PackLot:
    return PackLot(lot_id, remaining, expires, datetime(2026, 1, day, tzinfo=UTC))


def test_subscription_credits_are_spent_first() -> None:
    assert allocate(20, 100, [lot("a", 500, 1)]) == [Portion(Bucket.SUBSCRIPTION, 20)]


def test_one_run_may_be_split_across_subscription_and_pack() -> None:
    assert allocate(38, 10, [lot("a", 500, 1)]) == [
        Portion(Bucket.SUBSCRIPTION, 10),
        Portion(Bucket.PACK, 28, "a"),
    ]


def test_packs_are_spent_earliest_expiry_then_oldest_purchase_first() -> None:
    later = datetime(2026, 3, 1, tzinfo=UTC)
    lots = [lot("late", 100, 1, later), lot("new", 5, 9), lot("old", 5, 2)]
    assert allocate(80, 0, lots) == [
        Portion(Bucket.PACK, 5, "old"),
        Portion(Bucket.PACK, 5, "new"),
        Portion(Bucket.PACK, 70, "late"),
    ]


def test_a_run_costing_more_than_the_total_is_refused_whole() -> None:
    with pytest.raises(InsufficientCredits) as refused:
        allocate(80, 30, [lot("a", 49, 1)])
    assert (refused.value.required, refused.value.available) == (80, 79)


def test_an_exact_balance_is_enough() -> None:
    assert sum(p.amount for p in allocate(80, 30, [lot("a", 50, 1)])) == 80
