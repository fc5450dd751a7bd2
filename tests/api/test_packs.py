"""Credit packs: only with an active plan, granted at once, expiring at the next renewal."""

from datetime import UTC, datetime

from app.clock import FrozenClock
from tests.api_client import Api
from tests.db import Rows


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


async def test_a_pack_without_a_subscription_is_refused_and_writes_nothing(
    api: Api, rows: Rows
) -> None:
    # given an account that never subscribed
    account_id = await api.create_account()
    # when
    result = await api.buy(account_id)
    # then
    assert result["__typename"] == "SubscriptionRequired"
    assert "active STARTER or PRO plan" in result["message"]
    assert await rows.count("pack_purchases") == 0
    assert await rows.count("idempotency_keys") == 0
    assert await rows.ledger(account_id) == []


async def test_pack_credits_are_granted_at_once_in_the_purchase(api: Api, rows: Rows) -> None:
    account_id = await api.subscribed_account()
    # when
    result = await api.buy(account_id, "pack-1500")
    # then the response and the stored rows agree
    assert result["account"] == {
        "creditsTotal": 2500,
        "subscriptionBalance": 1000,
        "packBalance": 1500,
        "packExpiresAt": "2026-02-15T12:00:00+00:00",
    }
    assert result["purchase"]["credits"] == 1500
    grant = (await rows.ledger(account_id))[-1]
    assert grant == {
        "kind": "GRANT",
        "bucket": "PACK",
        "amount": 1500,
        "balance_after": 1500,
        "reference_type": "PURCHASE",
        "reference_id": result["purchase"]["id"],
    }


async def test_an_unknown_pack_is_a_typed_error(api: Api, rows: Rows) -> None:
    account_id = await api.subscribed_account()
    result = await api.buy(account_id, "pack-999999")
    assert result["__typename"] == "PackNotFound"
    assert result["packId"] == "pack-999999"
    assert await rows.count("pack_purchases") == 0


async def test_pack_credits_expire_at_next_monthly_renewal_on_annual_plan(
    api: Api, clock: FrozenClock, rows: Rows
) -> None:
    # given an annual plan started Jan 15 and a pack bought on Feb 20
    account_id = await api.subscribed_account("PRO", "ANNUAL")
    clock.set(utc(2026, 2, 20))
    bought = await api.buy(account_id)
    # then it expires at the start of the next monthly cycle, not at the year's end
    assert bought["purchase"]["expiresAt"] == "2026-03-15T12:00:00+00:00"
    clock.set(utc(2026, 3, 15, 11, 59))
    assert (await api.balances(account_id))["packBalance"] == 500
    clock.set(utc(2026, 3, 15, 12))
    after = await api.balances(account_id)
    assert (after["packBalance"], after["packExpiresAt"]) == (0, None)
    # and the expiry is in the ledger once a write brings the account up to date
    await api.run(account_id, "BACKGROUND_REMOVAL", key="later")
    expiries = [e for e in await rows.ledger(account_id) if e["kind"] == "EXPIRY"]
    assert {(e["bucket"], e["amount"]) for e in expiries} == {
        ("SUBSCRIPTION", -4000),
        ("PACK", -500),
    }


async def test_pack_credits_expire_at_the_end_of_the_month_on_a_monthly_plan(
    api: Api, clock: FrozenClock
) -> None:
    account_id = await api.subscribed_account("STARTER", "MONTHLY")
    await api.buy(account_id)
    clock.set(utc(2026, 2, 15, 12))
    assert (await api.balances(account_id))["creditsTotal"] == 1000


async def test_packs_bought_twice_in_a_cycle_add_up(api: Api) -> None:
    account_id = await api.subscribed_account()
    await api.buy(account_id, "pack-500", key="a")
    result = await api.buy(account_id, "pack-4000", key="b")
    assert result["account"]["packBalance"] == 4500


async def test_packs_are_not_refundable(api: Api) -> None:
    # The schema offers no operation that refunds a purchase.
    body = await api.data('{ __type(name: "Mutation") { fields { name } } }')
    names = {f["name"] for f in body["__type"]["fields"]}
    assert not {n for n in names if "refund" in n.lower() or "cancelPurchase" in n}
    assert {"purchasePack", "runGenerator"} <= names
