"""Plans renew every month, monthly or annual, from the anchor; cancelling stops renewals."""

from datetime import UTC, datetime, timedelta

import pytest

from app.clock import FrozenClock
from tests.api_client import START_SUBSCRIPTION, Api
from tests.conftest import T0
from tests.db import Rows

CANCEL = """
mutation Cancel($id: ID!) {
  cancelSubscription(accountId: $id) { creditsTotal nextRenewalAt subscription { status endsAt } }
}
"""


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


async def test_starting_a_plan_grants_its_monthly_credits(api: Api, rows: Rows) -> None:
    # given
    account_id = await api.create_account()
    # when
    account = await api.subscribe(account_id, "PRO", "ANNUAL")
    # then
    assert account["creditsTotal"] == 4000
    assert account["nextRenewalAt"] == (T0 + timedelta(days=31)).isoformat()
    assert await rows.ledger(account_id) == [
        {
            "kind": "GRANT",
            "bucket": "SUBSCRIPTION",
            "amount": 4000,
            "balance_after": 4000,
            "reference_type": "SUBSCRIPTION",
            "reference_id": (await rows.account(account_id))["subscription_id"],
        }
    ]


@pytest.mark.parametrize("interval", ["MONTHLY", "ANNUAL"])
async def test_credits_renew_every_month_for_both_intervals(
    api: Api, clock: FrozenClock, rows: Rows, interval: str
) -> None:
    # given a plan with part of its credits spent
    account_id = await api.subscribed_account("STARTER", interval)
    await api.run(account_id, "ULTRA", key="spend")
    # when the month turns, with no request in between
    clock.set(utc(2026, 2, 15, 12))
    # then the read already shows the reset, and the next write records it
    balances = await api.balances(account_id)
    assert balances["subscriptionBalance"] == 1000
    assert balances["nextRenewalAt"] == "2026-03-15T12:00:00+00:00"
    await api.run(account_id, "BACKGROUND_REMOVAL", key="after")
    kinds = [(e["kind"], e["amount"]) for e in await rows.ledger(account_id)]
    assert kinds == [
        ("GRANT", 1000),
        ("SPEND", -80),
        ("EXPIRY", -920),
        ("GRANT", 1000),
        ("SPEND", -1),
    ]


async def test_cycles_count_calendar_months_from_a_jan_31_anchor(
    api: Api, clock: FrozenClock
) -> None:
    # given a plan started on Jan 31
    clock.set(utc(2026, 1, 31, 9))
    account_id = await api.subscribed_account()
    # then renewals fall on Feb 28 and then Mar 31, not Mar 28
    assert (await api.balances(account_id))["nextRenewalAt"] == "2026-02-28T09:00:00+00:00"
    clock.set(utc(2026, 2, 28, 9))
    assert (await api.balances(account_id))["nextRenewalAt"] == "2026-03-31T09:00:00+00:00"


async def test_a_backdated_start_anchors_the_cycles(api: Api) -> None:
    account_id = await api.create_account()
    account = await api.subscribe(account_id, started_at=utc(2025, 11, 30, 8))
    assert account["creditsTotal"] == 1000
    assert account["nextRenewalAt"] == "2026-01-30T08:00:00+00:00"


async def test_a_start_date_in_the_future_is_refused_and_changes_nothing(
    api: Api, rows: Rows
) -> None:
    account_id = await api.create_account()
    variables = {
        "id": account_id,
        "plan": "PRO",
        "interval": "MONTHLY",
        "at": (T0 + timedelta(minutes=1)).isoformat(),
    }
    body = await api.post(START_SUBSCRIPTION, variables, token=api.token())
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "startedAt"}
    assert await rows.ledger(account_id) == []


async def test_a_second_active_subscription_is_a_conflict(api: Api) -> None:
    account_id = await api.subscribed_account()
    variables = {"id": account_id, "plan": "PRO", "interval": "MONTHLY", "at": None}
    body = await api.post(START_SUBSCRIPTION, variables, token=api.token())
    assert body["errors"][0]["extensions"]["code"] == "CONFLICT"


async def test_after_cancellation_credits_last_the_cycle_and_no_new_cycle_starts(
    api: Api, clock: FrozenClock, rows: Rows
) -> None:
    # given a subscriber with a pack
    account_id = await api.subscribed_account()
    await api.buy(account_id)
    # when the plan is cancelled
    cancelled = (await api.as_service(CANCEL, {"id": account_id}))["cancelSubscription"]
    # then what it holds stays spendable until the cycle ends
    assert cancelled["creditsTotal"] == 1500
    assert cancelled["nextRenewalAt"] is None
    assert cancelled["subscription"] == {
        "status": "CANCELED",
        "endsAt": "2026-02-15T12:00:00+00:00",
    }
    clock.set(utc(2026, 2, 15, 11, 59))
    assert (await api.run(account_id, "ULTRA", key="late"))["__typename"] == "GeneratorRun"
    # and at the end of the cycle everything expires and nothing is granted
    clock.set(utc(2026, 2, 15, 12))
    balances = await api.balances(account_id)
    assert (balances["creditsTotal"], balances["subscription"]["status"]) == (0, "EXPIRED")
    refused = await api.run(account_id, "BACKGROUND_REMOVAL", key="after-end")
    assert refused == {
        "__typename": "InsufficientCredits",
        "required": 1,
        "available": 0,
        "message": "This run costs 1 credits; 0 are available.",
    }


async def test_cancelled_accounts_cannot_buy_packs(api: Api) -> None:
    account_id = await api.subscribed_account()
    await api.as_service(CANCEL, {"id": account_id})
    assert (await api.buy(account_id))["__typename"] == "SubscriptionRequired"


async def test_cancelling_without_an_active_plan_is_a_conflict(api: Api) -> None:
    account_id = await api.create_account()
    body = await api.post(CANCEL, {"id": account_id}, token=api.token())
    assert body["errors"][0]["extensions"]["code"] == "CONFLICT"


async def test_a_new_plan_after_cancellation_starts_a_fresh_cycle(
    api: Api, clock: FrozenClock
) -> None:
    account_id = await api.subscribed_account()
    await api.as_service(CANCEL, {"id": account_id})
    clock.advance(timedelta(days=3))
    account = await api.subscribe(account_id, "PRO", "MONTHLY")
    assert account["creditsTotal"] == 4000
    assert account["nextRenewalAt"] == (T0 + timedelta(days=3 + 31)).isoformat()
