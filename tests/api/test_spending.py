"""Runs charge the tool's tariff: subscription credits first, then packs; never below zero."""

import pytest

from tests.api_client import Api
from tests.db import Rows

TARIFFS = {"TURBO": 20, "PRO": 38, "ULTRA": 80, "STYLE_TRANSFER": 15, "BACKGROUND_REMOVAL": 1}


@pytest.mark.parametrize("tool", TARIFFS)
async def test_a_run_charges_the_tariff_of_its_tool(api: Api, tool: str) -> None:
    account_id = await api.subscribed_account()
    run = await api.run(account_id, tool, prompt="a red chair")
    assert run["generation"]["tool"] == tool
    assert run["generation"]["cost"] == TARIFFS[tool]
    assert run["generation"]["status"] == "QUEUED"
    assert run["account"]["creditsTotal"] == 1000 - TARIFFS[tool]


async def test_subscription_credits_are_spent_before_pack_credits(api: Api) -> None:
    account_id = await api.subscribed_account()
    await api.buy(account_id)
    run = await api.run(account_id, "ULTRA")
    assert run["account"] == {"creditsTotal": 1420, "subscriptionBalance": 920, "packBalance": 500}


async def test_one_run_may_be_split_across_subscription_and_pack(api: Api, rows: Rows) -> None:
    # given 12 subscription credits left and a pack
    account_id = await api.subscribed_account()
    await api.buy(account_id)
    for i in range(12):
        await api.run(account_id, "ULTRA", key=f"drain-{i}")
    await api.run(account_id, "BACKGROUND_REMOVAL", key="drain-last")
    assert (await api.balances(account_id))["subscriptionBalance"] == 39
    # when a run costs more than the subscription bucket holds
    run = await api.run(account_id, "ULTRA", key="split")
    # then it takes all of the subscription credits and the rest from the pack
    assert run["account"] == {"creditsTotal": 459, "subscriptionBalance": 0, "packBalance": 459}
    generation_id = run["generation"]["id"]
    spends = [e for e in await rows.ledger(account_id) if e["reference_id"] == generation_id]
    assert [(e["bucket"], e["amount"], e["balance_after"]) for e in spends] == [
        ("SUBSCRIPTION", -39, 0),
        ("PACK", -41, 459),
    ]


async def drain_subscription_credits(api: Api, account_id: str) -> None:
    """1000 STARTER credits: twelve Ultra runs and two Turbo runs."""
    for i in range(12):
        await api.run(account_id, "ULTRA", key=f"drain-ultra-{i}")
    for i in range(2):
        await api.run(account_id, "TURBO", key=f"drain-turbo-{i}")


@pytest.mark.parametrize("tool", TARIFFS)
async def test_pack_credits_work_for_every_tool(api: Api, tool: str) -> None:
    # given an account whose only credits are pack credits
    account_id = await api.subscribed_account()
    await api.buy(account_id)
    await drain_subscription_credits(api, account_id)
    # when
    run = await api.run(account_id, tool, key="from-pack")
    # then
    assert run["__typename"] == "GeneratorRun"
    assert run["account"] == {
        "creditsTotal": 500 - TARIFFS[tool],
        "subscriptionBalance": 0,
        "packBalance": 500 - TARIFFS[tool],
    }


async def test_a_run_above_the_total_is_refused_and_charges_nothing(api: Api, rows: Rows) -> None:
    # given 20 credits left in all
    account_id = await api.subscribed_account()
    await drain_subscription_credits(api, account_id)
    await api.buy(account_id)
    for i in range(6):
        await api.run(account_id, "ULTRA", key=f"pack-{i}")
    assert (await api.balances(account_id))["creditsTotal"] == 20
    entries_before = await rows.ledger(account_id)
    # when
    refused = await api.run(account_id, "PRO", key="too-much")
    # then
    assert refused["__typename"] == "InsufficientCredits"
    assert (refused["required"], refused["available"]) == (38, 20)
    assert await rows.ledger(account_id) == entries_before
    assert (await api.balances(account_id))["creditsTotal"] == 20
    # and a run that fits exactly still goes through, down to zero and not below
    exact = await api.run(account_id, "TURBO", key="exact")
    assert exact["account"]["creditsTotal"] == 0


async def test_an_account_without_credits_cannot_run(api: Api) -> None:
    account_id = await api.create_account()
    refused = await api.run(account_id, "BACKGROUND_REMOVAL")
    assert refused["__typename"] == "InsufficientCredits"
    assert refused["available"] == 0
