"""No balance ever goes below zero, however many spends race for one account."""

import asyncio

import pytest

from tests.api_client import Api
from tests.db import Rows

pytestmark = pytest.mark.pgbouncer


async def test_concurrent_spends_on_one_account_succeed_exactly_as_far_as_credits_go(
    api: Api, rows: Rows
) -> None:
    # given 1000 credits and 60 concurrent Ultra runs (80 each): exactly 12 can succeed
    account_id = await api.subscribed_account()
    # when
    results = await asyncio.gather(
        *(api.run(account_id, "ULTRA", key=f"burst-{i}") for i in range(60))
    )
    # then
    kinds = [r["__typename"] for r in results]
    assert kinds.count("GeneratorRun") == 12
    assert kinds.count("InsufficientCredits") == 48
    account = await rows.account(account_id)
    assert (account["subscription_balance"], account["pack_balance"]) == (40, 0)
    assert await rows.ledger_sums(account_id) == {"SUBSCRIPTION": 40, "PACK": 0}
    assert await rows.count("generations") == 12


async def test_concurrent_retries_of_one_purchase_grant_once(api: Api, rows: Rows) -> None:
    account_id = await api.subscribed_account()
    results = await asyncio.gather(*(api.buy(account_id, key="same-tap") for _ in range(20)))
    assert {r["__typename"] for r in results} == {"PackPurchased"}
    assert len({r["purchase"]["id"] for r in results}) == 1
    assert await rows.count("pack_purchases") == 1
    assert (await api.balances(account_id))["packBalance"] == 500


async def test_concurrent_spends_split_across_buckets_stay_consistent(api: Api, rows: Rows) -> None:
    # given 1000 subscription + 500 pack credits, and 100 concurrent Pro runs (38 each)
    account_id = await api.subscribed_account()
    await api.buy(account_id)
    results = await asyncio.gather(
        *(api.run(account_id, "PRO", key=f"pro-{i}") for i in range(100))
    )
    succeeded = sum(r["__typename"] == "GeneratorRun" for r in results)
    # then exactly floor(1500 / 38) succeed and the rest is left
    assert succeeded == 1500 // 38
    account = await rows.account(account_id)
    assert account["subscription_balance"] + account["pack_balance"] == 1500 - 38 * succeeded
    assert await rows.ledger_sums(account_id) == {
        "SUBSCRIPTION": account["subscription_balance"],
        "PACK": account["pack_balance"],
    }
