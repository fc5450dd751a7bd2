"""Renewals reset the subscription bucket, expire packs and stop after cancellation."""

from datetime import UTC, datetime

from app.domain.model import BillingInterval, Plan, SubscriptionStatus
from app.domain.subscriptions import SubscriptionTerms
from app.domain.wallet import Wallet, renewals_due, start_cycle, wallet_at

ANCHOR = datetime(2026, 1, 31, 12, tzinfo=UTC)


def terms(canceled_at: datetime | None = None) -> SubscriptionTerms:
    return SubscriptionTerms(Plan.STARTER, BillingInterval.ANNUAL, ANCHOR, 1000, canceled_at)


def opened() -> Wallet:
    return start_cycle(Wallet.empty(), terms(), ANCHOR)[1]


def test_starting_a_subscription_grants_the_allowance_until_the_next_renewal() -> None:
    wallet = opened()
    assert wallet == Wallet(1000, 0, 0, datetime(2026, 2, 28, 12, tzinfo=UTC))


def test_renewal_resets_subscription_credits_and_expires_packs() -> None:
    wallet = Wallet(120, 300, 0, datetime(2026, 2, 28, 12, tzinfo=UTC))
    renewals, after = renewals_due(wallet, terms(), datetime(2026, 2, 28, 12, tzinfo=UTC))
    assert [(r.expired_subscription, r.expired_packs, r.granted) for r in renewals] == [
        (120, 300, 1000)
    ]
    assert after == Wallet(1000, 0, 1, datetime(2026, 3, 31, 12, tzinfo=UTC))


def test_nothing_changes_before_the_renewal_instant() -> None:
    wallet = Wallet(120, 300, 0, datetime(2026, 2, 28, 12, tzinfo=UTC))
    just_before = datetime(2026, 2, 28, 11, 59, 59, tzinfo=UTC)
    assert renewals_due(wallet, terms(), just_before) == ([], wallet)


def test_every_missed_month_is_a_renewal_of_its_own() -> None:
    renewals, after = renewals_due(opened(), terms(), datetime(2026, 5, 1, tzinfo=UTC))
    assert [r.at.date().isoformat() for r in renewals] == ["2026-02-28", "2026-03-31", "2026-04-30"]
    assert after.cycle_index == 3


def test_a_cancelled_subscription_gets_no_new_cycle() -> None:
    cancelled = terms(canceled_at=datetime(2026, 2, 10, tzinfo=UTC))
    wallet = Wallet(400, 50, 0, datetime(2026, 2, 28, 12, tzinfo=UTC))
    assert wallet_at(wallet, cancelled, datetime(2026, 2, 27, tzinfo=UTC)).total == 450
    renewals, after = renewals_due(wallet, cancelled, datetime(2026, 3, 5, tzinfo=UTC))
    assert [(r.expired_subscription, r.expired_packs, r.granted) for r in renewals] == [
        (400, 50, 0)
    ]
    assert after == Wallet.empty()
    assert cancelled.status_at(datetime(2026, 2, 27, tzinfo=UTC)) is SubscriptionStatus.CANCELED
    assert cancelled.status_at(datetime(2026, 2, 28, 12, tzinfo=UTC)) is SubscriptionStatus.EXPIRED
