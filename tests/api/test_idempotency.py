"""A retry with the same key returns the first result; other arguments are a conflict."""

from tests.api_client import Api
from tests.db import Rows


async def test_a_retried_purchase_returns_the_first_result_and_grants_once(
    api: Api, rows: Rows
) -> None:
    account_id = await api.subscribed_account()
    first = await api.buy(account_id, "pack-500", key="checkout-42")
    # when the client retries
    retry = await api.buy(account_id, "pack-500", key="checkout-42")
    # then
    assert retry == first
    assert await rows.count("pack_purchases") == 1
    assert (await api.balances(account_id))["packBalance"] == 500


async def test_a_retried_run_returns_the_same_generation_and_charges_once(
    api: Api, rows: Rows
) -> None:
    account_id = await api.subscribed_account()
    first = await api.run(account_id, "PRO", key="tap-7", prompt="robot")
    retry = await api.run(account_id, "PRO", key="tap-7", prompt="robot")
    assert retry == first
    assert retry["account"]["creditsTotal"] == 962
    assert await rows.count("generations") == 1
    assert len([e for e in await rows.ledger(account_id) if e["kind"] == "SPEND"]) == 1


async def test_the_same_key_with_other_arguments_is_a_conflict(api: Api, rows: Rows) -> None:
    account_id = await api.subscribed_account()
    await api.run(account_id, "TURBO", key="k1")
    conflict = await api.run(account_id, "ULTRA", key="k1")
    assert conflict["__typename"] == "IdempotencyConflict"
    assert (await api.balances(account_id))["creditsTotal"] == 980
    other_prompt = await api.run(account_id, "TURBO", key="k1", prompt="different")
    assert other_prompt["__typename"] == "IdempotencyConflict"


async def test_a_key_used_for_a_run_cannot_buy_a_pack(api: Api) -> None:
    account_id = await api.subscribed_account()
    await api.run(account_id, "TURBO", key="shared")
    conflict = await api.buy(account_id, key="shared")
    assert conflict == {
        "__typename": "IdempotencyConflict",
        "message": "Idempotency key 'shared' was already used with different arguments.",
        "idempotencyKey": "shared",
    }


async def test_keys_are_scoped_to_the_account(api: Api) -> None:
    alice = await api.subscribed_account()
    bob = await api.subscribed_account()
    await api.run(alice, "TURBO", key="same")
    run = await api.run(bob, "ULTRA", key="same")
    assert run["__typename"] == "GeneratorRun"
    assert run["account"]["creditsTotal"] == 920


async def test_a_refused_request_is_not_remembered(api: Api, rows: Rows) -> None:
    # A rejection changes nothing, so the same key may be retried once the cause is gone.
    account_id = await api.create_account()
    assert (await api.buy(account_id, key="k"))["__typename"] == "SubscriptionRequired"
    await api.subscribe(account_id)
    assert (await api.buy(account_id, key="k"))["__typename"] == "PackPurchased"


async def test_an_empty_or_oversized_key_is_bad_input(api: Api) -> None:
    account_id = await api.subscribed_account()
    for key in ["", "x" * 256]:
        body = await api.post(
            "mutation($k: String!) { runGenerator(input: {tool: TURBO, idempotencyKey: $k})"
            " { __typename } }",
            {"k": key},
            token=api.token(account_id),
        )
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert (await api.balances(account_id))["creditsTotal"] == 1000
