"""The outgoing webhooks' rules, without I/O: which events a write raises, the retry
schedule, disabling, rotation and which addresses may be called."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.domain.model import Bucket, LedgerKind, Plan
from app.domain.webhooks import (
    BalanceAlerts,
    Balances,
    Entry,
    EventType,
    GenerationEnded,
    UnsafeUrl,
    check_address,
    check_url_form,
    crossings,
    decide_events,
    low_threshold,
    next_attempt_at,
    should_disable,
    signing_secrets,
)

T = datetime(2026, 3, 1, 12, tzinfo=UTC)
ALERTS = BalanceAlerts(low_below=100, depleted_below=1)


def spend(position: int, amount: int, after: int, at: datetime = T) -> Entry:
    return Entry(
        position,
        LedgerKind.SPEND,
        Bucket.SUBSCRIPTION,
        -amount,
        after,
        "GENERATION",
        f"g{position}",
        None,
        at,
    )


def test_the_low_threshold_is_ten_percent_of_the_allowance_unless_the_plan_names_one() -> None:
    assert low_threshold(Plan.STARTER, 1000, {}) == 100
    assert low_threshold(Plan.PRO, 4000, {Plan.PRO: 250}) == 250
    assert low_threshold(None, None, {}) is None


def test_a_crossing_is_counted_once_however_many_spends_follow_it() -> None:
    assert crossings(150, [-20, -20, -20, -20, -20], 100) == [2]
    assert crossings(99, [-1, -1], 100) == []  # already below: no new crossing
    assert crossings(100, [-1], 100) == [0]  # at the threshold is not below it
    assert crossings(120, [-30, +50, -60], 100) == [0, 2]  # back above, then below again
    assert crossings(120, [-30], None) == []


def test_a_spend_across_the_threshold_raises_credits_low_with_its_entry() -> None:
    entries = [spend(0, 30, 110), spend(1, 30, 80, T + timedelta(seconds=1))]
    (event,) = decide_events("a", Balances(140, 0), entries, ALERTS, [], T)
    assert (event.type, event.reason, event.entries) == (EventType.CREDITS_LOW, "spend", (1,))
    assert event.balances == Balances(80, 0)


def test_a_renewal_whose_expiries_dip_below_before_its_grant_is_no_crossing() -> None:
    # given an account at 500 whose cycle renews: 500 expire, then 1000 are granted
    at = T - timedelta(minutes=1)
    entries = [
        Entry(0, LedgerKind.EXPIRY, Bucket.SUBSCRIPTION, -500, 0, "RENEWAL", "s", None, at),
        Entry(1, LedgerKind.GRANT, Bucket.SUBSCRIPTION, 1000, 1000, "RENEWAL", "s", None, at),
    ]
    events = decide_events("a", Balances(500, 0), entries, ALERTS, [], T)
    assert [e.type for e in events] == [EventType.CREDITS_RENEWED]
    assert events[0].entries == (0, 1)


def test_falling_below_the_cheapest_tariff_is_depletion() -> None:
    events = decide_events("a", Balances(1, 0), [spend(0, 1, 0)], ALERTS, [], T)
    assert [e.type for e in events] == [EventType.CREDITS_DEPLETED]


def test_a_failed_generation_names_its_refund() -> None:
    refund = Entry(0, LedgerKind.REFUND, Bucket.PACK, 80, 500, "GENERATION", "g", "lot", T)
    fact = GenerationEnded("g", "ULTRA", 80, succeeded=False, detail="GPU")
    (event,) = decide_events("a", Balances(0, 420), [refund], ALERTS, [fact], T)
    assert event.type is EventType.GENERATION_FAILED
    assert (event.data["refunded"], event.data["failureReason"], event.entries) == (80, "GPU", (0,))


def test_retries_follow_the_schedule_then_the_delivery_fails() -> None:
    waits = []
    at = T
    attempts = 1
    while (next_at := next_attempt_at(attempts, at)) is not None:
        waits.append(next_at - at)
        at, attempts = next_at, attempts + 1
    assert waits == [
        timedelta(seconds=5),
        timedelta(minutes=5),
        timedelta(minutes=30),
        timedelta(hours=2),
        timedelta(hours=5),
        timedelta(hours=10),
        timedelta(hours=10),
    ]
    assert attempts == 8  # the first attempt and seven retries


def test_an_endpoint_is_disabled_after_five_days_of_failures() -> None:
    assert not should_disable(None, T)
    assert not should_disable(T - timedelta(days=5) + timedelta(seconds=1), T)
    assert should_disable(T - timedelta(days=5), T)


def test_the_old_secret_signs_beside_the_new_until_the_overlap_ends() -> None:
    until = T + timedelta(hours=24)
    assert signing_secrets("new", "old", until, T) == ["new", "old"]
    assert signing_secrets("new", "old", until, until) == ["new"]
    assert signing_secrets("new", None, None, T) == ["new"]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.31.1.1",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:10.0.0.1",
        "0.0.0.0",
        "100.64.0.1",
    ],
)
def test_addresses_inside_are_refused(address: str) -> None:
    with pytest.raises(UnsafeUrl):
        check_address(address)


def test_public_addresses_and_https_names_are_accepted() -> None:
    check_address("93.184.216.34")
    check_address("2606:2800:220:1:248:1893:25c8:1946")
    assert check_url_form("https://hooks.example.com/x", public_only=True) == "hooks.example.com"
    assert check_url_form("http://127.0.0.1:9/x", public_only=False) == "127.0.0.1"
