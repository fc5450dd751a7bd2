"""The live-update rules with no I/O: feeds, deadlines, notification payloads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from app.clock import FrozenClock
from app.domain.accounts import account_view
from app.domain.deadlines import next_change_at
from app.domain.events import (
    AccountChanged,
    CreditsPosted,
    GenerationUpdated,
    PurchaseStatusChanged,
    live_events,
)
from app.domain.model import BillingInterval, Bucket, LedgerKind, Plan
from app.domain.subscriptions import SubscriptionTerms
from app.domain.wallet import Wallet
from app.events.alarm import RenewalAlarm
from app.events.hub import Hub
from app.events.postgres import MAX_PAYLOAD_BYTES, asyncpg_dsn, decode, encode

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
CYCLE_END = datetime(2026, 2, 15, 12, 0, tzinfo=UTC)


def _view(*, canceled_at: datetime | None = None, subscription: int = 500, packs: int = 0):
    terms = SubscriptionTerms(Plan.STARTER, BillingInterval.MONTHLY, T0, 1000, canceled_at)
    return account_view(
        account_id="a",
        email="a@example.com",
        created_at=T0,
        wallet=Wallet(subscription, packs, 0, CYCLE_END),
        subscription_id="s",
        terms=terms,
        now=T0 + timedelta(days=1),
    )


def test_an_active_plan_next_changes_at_its_renewal() -> None:
    assert next_change_at(_view(), T0) == CYCLE_END


def test_a_cancelled_plan_next_changes_when_it_ends() -> None:
    view = _view(canceled_at=T0 + timedelta(days=2))
    assert view.next_renewal_at is None
    assert next_change_at(view, T0 + timedelta(days=3)) == CYCLE_END


def test_nothing_changes_by_time_without_a_plan_or_credits() -> None:
    view = account_view(
        account_id="a",
        email="a@example.com",
        created_at=T0,
        wallet=Wallet.empty(),
        subscription_id=None,
        terms=None,
        now=T0,
    )
    assert next_change_at(view, T0) is None


async def test_a_feed_coalesces_what_happened_while_nobody_looked() -> None:
    hub = Hub()
    with hub.open("a", "creditsChanged") as feed, hub.open("b", "creditsChanged") as other:
        hub.deliver(AccountChanged("a"))
        hub.deliver(GenerationUpdated("g1", "a"))
        hub.deliver(GenerationUpdated("g1", "a"))
        hub.deliver(GenerationUpdated("g2", "a"))
        changes = await feed.changes()
        assert changes.account and changes.generations == ("g1", "g2")
        assert not other.has_news
    assert hub.all_feeds() == []


async def test_the_alarm_wakes_feeds_whose_moment_has_come() -> None:
    hub, clock = Hub(), FrozenClock(T0)
    alarm = RenewalAlarm(hub, clock)
    with hub.open("a", "creditsChanged") as feed:
        feed.wake(CYCLE_END)
        assert alarm.check() == 0
        clock.set(CYCLE_END)
        assert alarm.check() == 1
        assert (await feed.changes()).time_passed
        assert feed.wake_at is None
        assert alarm.check() == 0


def test_live_events_are_deduplicated_and_credit_postings_stay_local() -> None:
    posted = CreditsPosted(LedgerKind.SPEND, Bucket.SUBSCRIPTION, -20, None)
    events: list[AccountChanged | GenerationUpdated | CreditsPosted | PurchaseStatusChanged] = [
        AccountChanged("a"),
        posted,
        AccountChanged("a"),
        GenerationUpdated("g", "a"),
    ]
    assert live_events(events) == [AccountChanged("a"), GenerationUpdated("g", "a")]


def test_a_transactions_events_travel_in_one_notification_and_back() -> None:
    events: list[AccountChanged | GenerationUpdated] = [
        AccountChanged("a"),
        GenerationUpdated("g", "a"),
    ]
    (payload,) = encode(events)
    assert decode(payload) == events


def test_many_events_are_split_below_the_notify_limit() -> None:
    events: list[AccountChanged | GenerationUpdated] = [
        GenerationUpdated(f"{i:036d}", "a" * 36) for i in range(500)
    ]
    payloads = encode(events)
    assert len(payloads) > 1
    assert all(len(p.encode()) <= MAX_PAYLOAD_BYTES for p in payloads)
    assert [e for p in payloads for e in decode(p)] == events


def test_malformed_notifications_are_ignored() -> None:
    for payload in ["", "{}", "[1, 2]", json.dumps([["a", 3]]), json.dumps({"a": "x"})]:
        assert decode(payload) == []


def test_the_listener_url_drops_options_only_sqlalchemy_understands() -> None:
    url = "postgresql+asyncpg://u:p@db:6432/app?prepared_statement_cache_size=0&ssl=require"
    assert asyncpg_dsn(url) == "postgresql://u:p@db:6432/app?ssl=require"


def test_only_a_deadline_earlier_than_the_alarms_wakes_it() -> None:
    hub = Hub()
    hub.alarm_target = CYCLE_END
    with hub.open("a", "creditsChanged") as later, hub.open("b", "creditsChanged") as sooner:
        later.wake(CYCLE_END + timedelta(days=1))
        assert not hub.deadlines_changed.is_set()
        sooner.wake(CYCLE_END - timedelta(days=1))
        assert hub.deadlines_changed.is_set()
