"""Mutations are rate limited per account and per IP; refusals say when to retry.

The limiter reads the app's clock, which these tests hold still: tiny budgets ("3/minute"),
the 4th call refused. A sliding-window counter may ask a burst to wait up to two windows
(the previous window's calls fade out linearly), so ``retryAfter`` is checked against 120 s;
the window arithmetic itself, with a moving clock, is in tests/unit/test_rate_limits.py.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

from tests.api_client import RUN_GENERATOR, Api
from tests.conftest import ApiFactory

REDIS_URL = os.environ.get("CREDITGATE_TEST_REDIS_URL")
TINY = "3/minute"
PLENTY = "1000/minute"


async def run(api: Api, account_id: str, key: str) -> dict[str, Any]:
    variables = {"tool": "TURBO", "key": key, "prompt": None}
    return await api.post(RUN_GENERATOR, variables, token=api.token(account_id))


def refused(body: dict[str, Any]) -> dict[str, Any]:
    assert body["data"] is None, body
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED", error
    return dict(error["extensions"])


async def test_the_fourth_mutation_of_an_account_in_a_minute_is_refused_and_not_charged(
    make_api: ApiFactory,
) -> None:
    # given an account whose budget is 3 mutations a minute
    api = await make_api(
        rate_limits_enabled=True, rate_limit_per_account=TINY, rate_limit_per_ip=PLENTY
    )
    account_id = await api.subscribed_account()
    other_id = await api.subscribed_account()
    for n in range(3):
        assert (await run(api, account_id, f"run-{n}"))["data"]["runGenerator"]["__typename"] == (
            "GeneratorRun"
        )

    # when
    fourth = await run(api, account_id, "run-3")

    # then it is refused with a retry time, nothing is charged, other accounts go on
    extensions = refused(fourth)
    assert extensions["scope"] == "account"
    assert 1 <= extensions["retryAfter"] <= 120
    assert (await api.balances(account_id))["creditsTotal"] == 1000 - 3 * 20
    assert (await run(api, other_id, "run-0"))["data"]["runGenerator"]["__typename"] == (
        "GeneratorRun"
    )


async def test_the_fourth_mutation_from_one_ip_in_a_minute_is_refused(
    make_api: ApiFactory,
) -> None:
    api = await make_api(
        rate_limits_enabled=True, rate_limit_per_ip=TINY, client=("203.0.113.7", 4000)
    )
    elsewhere = await make_api(
        rate_limits_enabled=True, rate_limit_per_ip=TINY, client=("198.51.100.9", 4000)
    )
    accounts = [await api.create_account() for _ in range(4)]  # service token: not counted

    for n, account_id in enumerate(accounts[:3]):
        assert (await run(api, account_id, f"k{n}"))["data"]["runGenerator"]
    fourth = await run(api, accounts[3], "k3")
    anonymous = await api.post('mutation { createAccount(input: {email: "x@y.zz"}) { id } }')

    assert refused(fourth)["scope"] == "ip"
    assert refused(anonymous)["scope"] == "ip"
    assert (await run(elsewhere, accounts[3], "k3"))["data"]["runGenerator"]


async def test_each_aliased_mutation_counts(make_api: ApiFactory) -> None:
    api = await make_api(
        rate_limits_enabled=True, rate_limit_per_account=TINY, rate_limit_per_ip=PLENTY
    )
    account_id = await api.subscribed_account()
    runs = " ".join(
        f'r{n}: runGenerator(input: {{tool: TURBO, idempotencyKey: "a{n}"}}) {{ __typename }}'
        for n in range(4)
    )

    body = await api.post(f"mutation {{ {runs} }}", token=api.token(account_id))

    refused(body)
    assert (await api.balances(account_id))["creditsTotal"] == 1000


async def test_a_document_sent_again_counts_as_many_mutations_again(make_api: ApiFactory) -> None:
    # given a budget of 3 and one document with two mutations (its count worked out once)
    api = await make_api(
        rate_limits_enabled=True, rate_limit_per_account=TINY, rate_limit_per_ip=PLENTY
    )
    account_id = await api.subscribed_account()
    document = """mutation($a: String!, $b: String!) {
      a: runGenerator(input: {tool: TURBO, idempotencyKey: $a}) { __typename }
      b: runGenerator(input: {tool: TURBO, idempotencyKey: $b}) { __typename }
    }"""

    # when it is sent twice
    first = await api.post(document, {"a": "k1", "b": "k2"}, token=api.token(account_id))
    second = await api.post(document, {"a": "k3", "b": "k4"}, token=api.token(account_id))

    # then the second, two more, is over the budget of 3
    assert "errors" not in first
    refused(second)


async def test_queries_and_service_tokens_are_not_counted(make_api: ApiFactory) -> None:
    api = await make_api(
        rate_limits_enabled=True, rate_limit_per_account=TINY, rate_limit_per_ip=TINY
    )
    account_id = await api.subscribed_account()

    for _ in range(5):
        await api.balances(account_id)
        await api.create_account()

    assert (await run(api, account_id, "after"))["data"]["runGenerator"]


async def test_rate_limits_can_be_turned_off(make_api: ApiFactory) -> None:
    api = await make_api(rate_limits_enabled=False, rate_limit_per_account=TINY)
    account_id = await api.subscribed_account()

    results = [await run(api, account_id, f"run-{n}") for n in range(6)]

    assert all(r["data"]["runGenerator"]["__typename"] == "GeneratorRun" for r in results)


def test_a_rate_that_is_not_a_rate_is_refused_at_startup() -> None:
    from pydantic import ValidationError

    from app.settings import Settings

    with pytest.raises(ValidationError, match="60/minute"):
        Settings(_env_file=None, rate_limit_per_account="sixty a minute")


@pytest.mark.skipif(not REDIS_URL, reason="set CREDITGATE_TEST_REDIS_URL to test shared limits")
async def test_processes_sharing_redis_share_one_budget(make_api: ApiFactory) -> None:
    # given two apps, as two processes would be, counting in one Redis under a fresh prefix
    shared: dict[str, Any] = {
        "rate_limits_enabled": True,
        "redis_url": REDIS_URL,
        "rate_limit_key_prefix": f"creditgate-test-{uuid.uuid4().hex}",
        "rate_limit_per_account": TINY,
        "rate_limit_per_ip": PLENTY,
    }
    first = await make_api(**shared)
    second = await make_api(**shared)
    account_id = await first.subscribed_account()

    # when the account spends its budget across both
    await run(first, account_id, "a")
    await run(second, account_id, "b")
    await run(first, account_id, "c")
    fourth = await run(second, account_id, "d")

    # then the second process refuses the fourth call
    extensions = refused(fourth)
    assert 1 <= extensions["retryAfter"] <= 120
