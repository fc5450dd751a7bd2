"""Under concurrency the low-balance alert fires once per crossing, never once per spend."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.api_client import Api
from tests.db import Rows
from tests.webhooks.conftest import create_endpoint, deliver
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.postgres_only


@pytest.fixture
def database_url(postgres_url: str) -> str:
    return postgres_url


async def test_200_concurrent_spends_across_the_threshold_raise_one_credits_low(
    api: Api, app: Any, receiver: Receiver, rows: Rows
) -> None:
    # given an account with 200 credits left of 1000 (low below 100, depleted below 1)
    await create_endpoint(api, receiver, ["CREDITS_LOW", "CREDITS_DEPLETED"])
    account_id = await api.subscribed_account()
    for n in range(10):
        await api.run(account_id, "ULTRA", key=f"warm-{n}")
    assert (await api.balances(account_id))["creditsTotal"] == 200
    # when 200 one-credit runs arrive at once
    runs = await asyncio.gather(
        *(api.run(account_id, "BACKGROUND_REMOVAL", key=f"r-{n}") for n in range(200))
    )
    # then every run was taken, and the total crossed each threshold once
    assert {r["__typename"] for r in runs} == {"GeneratorRun"}
    assert (await api.balances(account_id))["creditsTotal"] == 0
    outbox = await rows.all(
        "SELECT event_type FROM webhook_events WHERE event_type LIKE 'credits.%' "
        "AND event_type <> 'credits.renewed' ORDER BY event_type"
    )
    assert [r["event_type"] for r in outbox] == ["credits.depleted", "credits.low"]
    await deliver(app)
    events = receiver.events()
    assert sorted(e["type"] for e in events) == ["credits.depleted", "credits.low"]
    (low,) = [e["data"] for e in events if e["type"] == "credits.low"]
    assert low["balances"]["total"] == 99 and low["ledgerEntries"][0]["amount"] == -1
