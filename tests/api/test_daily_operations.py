"""What support, billing and users do every day: cancel a queued run, refuse one before it
starts, a cap on runs at once per plan, the demo worker for local development."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from app.clock import FrozenClock
from app.services.audit import run_audit
from tests.api_client import Api, Worker
from tests.conftest import ApiFactory
from tests.db import Rows
from tests.servers import serving, ws_session

CANCEL = """
mutation Cancel($id: ID!) {
  cancelGeneration(id: $id) {
    __typename
    ... on GenerationCanceled {
      generation { id status finishedAt }
      account { creditsTotal subscriptionBalance packBalance activeGenerations }
    }
    ... on InvalidGenerationTransition { message generation { id status } }
    ... on GenerationNotFound { message generationId }
  }
}
"""
RUN = """
mutation Run($tool: Tool!, $key: String!) {
  runGenerator(input: {tool: $tool, idempotencyKey: $key}) {
    __typename
    ... on GeneratorRun { generation { id status } account { creditsTotal activeGenerations } }
    ... on TooManyActiveGenerations { limit active message }
    ... on InsufficientCredits { required available }
  }
}
"""
GENERATION = "query G($id: ID!) { generation(id: $id) { id status resultUrl } }"
FOLLOW = "subscription F($id: ID) { generationUpdated(id: $id) { id status } }"


async def cancel(api: Api, generation_id: str, as_account: str | None = None) -> Any:
    token = api.token(as_account) if as_account else api.token()
    data = await api.data(CANCEL, {"id": generation_id}, token=token)
    return data["cancelGeneration"]


async def test_a_queued_run_cancelled_by_its_owner_gives_every_credit_back(
    api: Api, rows: Rows
) -> None:
    # given a run held partly from the subscription and partly from a pack
    account_id = await api.subscribed_account()
    await api.buy(account_id)
    for n in range(12):  # 960 of the 1000 subscription credits
        await api.run(account_id, "ULTRA", key=f"spend-{n}")
    run = await api.run(account_id, "ULTRA", key="split")
    assert run["account"]["subscriptionBalance"] == 0
    # when its owner cancels it
    result = await cancel(api, run["generation"]["id"], account_id)
    # then it is CANCELED and both buckets are whole again
    assert result["__typename"] == "GenerationCanceled"
    assert result["generation"]["status"] == "CANCELED"
    assert result["generation"]["finishedAt"] is not None
    assert (result["account"]["subscriptionBalance"], result["account"]["packBalance"]) == (
        40,
        500,
    )
    refunds = [
        (e["bucket"], e["amount"])
        for e in await rows.ledger(account_id)
        if e["kind"] == "REFUND" and e["reference_id"] == run["generation"]["id"]
    ]
    assert sorted(refunds) == [("PACK", 40), ("SUBSCRIPTION", 40)]


async def test_a_service_token_may_cancel_any_run_a_user_only_its_own(api: Api) -> None:
    owner = await api.subscribed_account()
    other = await api.subscribed_account()
    generation_id = (await api.run(owner))["generation"]["id"]
    refused = await cancel(api, generation_id, other)
    assert refused["__typename"] == "GenerationNotFound"
    assert (await api.balances(owner))["creditsTotal"] == 980
    assert (await cancel(api, generation_id))["__typename"] == "GenerationCanceled"
    assert (await api.balances(owner))["creditsTotal"] == 1000


async def test_a_running_or_finished_run_cannot_be_cancelled(api: Api, rows: Rows) -> None:
    account_id = await api.subscribed_account()
    worker = Worker(api)
    running = (await api.run(account_id, key="a"))["generation"]["id"]
    await worker.claim()
    queued = (await api.run(account_id, key="b"))["generation"]["id"]
    # a claimed run is the worker's now
    refused = await cancel(api, running, account_id)
    assert refused["__typename"] == "InvalidGenerationTransition"
    assert refused["generation"]["status"] == "RUNNING"
    # a second cancel is refused and refunds nothing twice
    assert (await cancel(api, queued, account_id))["__typename"] == "GenerationCanceled"
    again = await cancel(api, queued, account_id)
    assert again["__typename"] == "InvalidGenerationTransition"
    assert again["generation"]["status"] == "CANCELED"
    assert (await api.balances(account_id))["creditsTotal"] == 980
    # and a worker can no longer claim or fail it
    assert await worker.claim() == []
    assert (await worker.fail(queued))["__typename"] == "InvalidGenerationTransition"
    assert (await run_audit(api.client._transport.app.state.services)).findings == []  # type: ignore[attr-defined]


async def test_credits_of_a_cycle_that_ended_come_back_and_expire_when_cancelled(
    api: Api, clock: FrozenClock, rows: Rows
) -> None:
    account_id = await api.subscribed_account()
    generation_id = (await api.run(account_id))["generation"]["id"]
    clock.advance(timedelta(days=32))  # renewed: the held 20 belong to the last cycle
    result = await cancel(api, generation_id, account_id)
    assert result["account"]["subscriptionBalance"] == 1000
    tail = [(e["kind"], e["amount"]) for e in (await rows.ledger(account_id))[-2:]]
    assert tail == [("REFUND", 20), ("EXPIRY", -20)]


async def test_a_dispatcher_may_refuse_a_queued_run_before_it_starts(api: Api) -> None:
    account_id = await api.subscribed_account()
    generation_id = (await api.run(account_id, "ULTRA"))["generation"]["id"]
    result = await Worker(api).fail(generation_id, "prompt refused by the safety check")
    assert result["__typename"] == "GenerationFailed"
    assert result["generation"]["status"] == "FAILED"
    assert result["generation"]["failureReason"] == "prompt refused by the safety check"
    assert result["account"]["creditsTotal"] == 1000


@pytest.fixture
async def capped(make_api: ApiFactory) -> Api:
    return await make_api(starter_max_active_generations=2, pro_max_active_generations=5)


async def test_a_plan_runs_at_most_its_cap_at_once_and_charges_nothing_beyond(
    capped: Api, rows: Rows
) -> None:
    account_id = await capped.subscribed_account()  # STARTER: 2 at once
    runs = [
        (await capped.as_user(account_id, RUN, {"tool": "TURBO", "key": f"k{n}"})) for n in range(3)
    ]
    results = [r["runGenerator"] for r in runs]
    assert [r["__typename"] for r in results] == [
        "GeneratorRun",
        "GeneratorRun",
        "TooManyActiveGenerations",
    ]
    assert (results[2]["limit"], results[2]["active"]) == (2, 2)
    assert results[1]["account"]["activeGenerations"] == 2
    assert (await capped.balances(account_id))["creditsTotal"] == 960
    assert await rows.count("generations") == 2
    # a retry of an accepted run is its first answer, not a refusal
    retry = (await capped.as_user(account_id, RUN, {"tool": "TURBO", "key": "k0"}))["runGenerator"]
    assert retry["__typename"] == "GeneratorRun"
    # once one ends, there is room again
    await cancel(capped, results[0]["generation"]["id"], account_id)
    again = (await capped.as_user(account_id, RUN, {"tool": "TURBO", "key": "k2"}))["runGenerator"]
    assert again["__typename"] == "GeneratorRun"


@pytest.fixture
async def starter_capped(make_api: ApiFactory) -> Api:
    return await make_api(starter_max_active_generations=2, pro_max_active_generations=0)


async def test_a_plan_without_a_cap_runs_any_number_at_once(starter_capped: Api) -> None:
    account_id = await starter_capped.subscribed_account("PRO")  # PRO: no cap here
    for n in range(4):
        run = await starter_capped.as_user(account_id, RUN, {"tool": "TURBO", "key": f"k{n}"})
        assert run["runGenerator"]["__typename"] == "GeneratorRun"


async def test_the_plans_list_their_caps(capped: Api) -> None:
    data = await capped.data("{ plans { plan monthlyCredits maxActiveGenerations } }")
    assert {p["plan"]: p["maxActiveGenerations"] for p in data["plans"]} == {
        "STARTER": 2,
        "PRO": 5,
    }


@pytest.fixture
async def demo_address(make_api: ApiFactory) -> AsyncIterator[tuple[Api, str]]:
    api = await make_api(demo_worker=True, demo_worker_seconds=0.3)
    app = api.client._transport.app  # type: ignore[attr-defined]
    async with serving(app) as address:
        yield api, address


async def test_the_demo_worker_runs_queued_jobs_to_success(
    demo_address: tuple[Api, str],
) -> None:
    api, address = demo_address
    account_id = await api.subscribed_account()
    generation_id = (await api.run(account_id))["generation"]["id"]
    # then the run is pushed through its whole life, as a real worker would move it
    async with ws_session(address, api.token(account_id)) as session:
        stream = session.subscribe(FOLLOW, {"id": generation_id})
        statuses = [(await stream.next())["generationUpdated"]["status"]]
        while statuses[-1] != "SUCCEEDED":
            statuses.append((await stream.next())["generationUpdated"]["status"])
    assert statuses[-2:] == ["RUNNING", "SUCCEEDED"]
    data = await api.as_user(account_id, GENERATION, {"id": generation_id})
    assert data["generation"]["resultUrl"].endswith(f"{generation_id}.glb")
    assert (await api.balances(account_id))["creditsTotal"] == 980


def test_the_demo_worker_is_on_in_development_only() -> None:
    from app.settings import Settings

    assert Settings(_env_file=None).demo_worker_enabled
    assert not Settings(_env_file=None, env="test").demo_worker_enabled
