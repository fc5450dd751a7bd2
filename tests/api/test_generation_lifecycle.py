"""Two-phase charging: a run holds its cost; success settles it, failure refunds it once."""

from datetime import UTC, datetime, timedelta

import pytest

from app.clock import FrozenClock
from app.services.maintenance import sweep
from tests.api_client import CLAIM, Api, Worker
from tests.db import Rows

CANCEL = "mutation($id: ID!) { cancelSubscription(accountId: $id) { id } }"


@pytest.fixture
def worker(api: Api) -> Worker:
    return Worker(api)


async def started_run(api: Api, worker: Worker, account_id: str, tool: str = "ULTRA") -> str:
    run = await api.run(account_id, tool, key=f"run-{tool}-{datetime.now(UTC).timestamp()}")
    generation_id: str = run["generation"]["id"]
    claimed = await worker.claim(limit=1, tools=[tool])
    assert [c["id"] for c in claimed] == [generation_id]
    return generation_id


async def run_split_across_buckets(api: Api, worker: Worker) -> tuple[str, str]:
    """A claimed Ultra run held from 39 subscription and 41 pack credits."""
    account_id = await api.subscribed_account()
    await api.buy(account_id)
    for i in range(12):
        await api.run(account_id, "ULTRA", key=f"d{i}")
    await api.run(account_id, "BACKGROUND_REMOVAL", key="d")
    await worker.claim(limit=100)
    return account_id, await started_run(api, worker, account_id)


# The split hold of run_split_across_buckets, refunded into buckets that have since ended.
REFUNDED_AND_EXPIRED = [
    ("REFUND", "SUBSCRIPTION", 39),
    ("EXPIRY", "SUBSCRIPTION", -39),
    ("REFUND", "PACK", 41),
    ("EXPIRY", "PACK", -41),
]


async def last_moves(rows: Rows, account_id: str, count: int) -> list[tuple[str, str, int]]:
    entries = (await rows.ledger(account_id))[-count:]
    return [(e["kind"], e["bucket"], e["amount"]) for e in entries]


async def holds(rows: Rows, generation_id: str) -> list[tuple[str, int, str]]:
    found = await rows.all(
        "SELECT bucket, amount, status FROM holds WHERE generation_id = :g ORDER BY id",
        g=generation_id,
    )
    return [(h["bucket"], h["amount"], h["status"]) for h in found]


async def test_a_run_holds_its_cost_at_once_and_queues_the_job(api: Api, rows: Rows) -> None:
    account_id = await api.subscribed_account()
    run = await api.run(account_id, "PRO", prompt="a teapot")
    assert run["generation"]["status"] == "QUEUED"
    assert run["account"]["creditsTotal"] == 962
    assert await holds(rows, run["generation"]["id"]) == [("SUBSCRIPTION", 38, "OPEN")]


async def test_each_queued_job_is_claimed_by_one_worker_oldest_first(
    api: Api, worker: Worker, clock: FrozenClock
) -> None:
    account_id = await api.subscribed_account()
    first = await api.run(account_id, "TURBO", key="a")
    clock.advance(timedelta(seconds=1))
    second = await api.run(account_id, "ULTRA", key="b")
    claimed = await worker.claim(limit=1)
    assert [(c["id"], c["status"]) for c in claimed] == [(first["generation"]["id"], "RUNNING")]
    assert [c["id"] for c in await worker.claim(limit=5)] == [second["generation"]["id"]]
    assert await worker.claim(limit=5) == []


async def test_workers_can_claim_only_the_tools_they_run(api: Api, worker: Worker) -> None:
    account_id = await api.subscribed_account()
    await api.run(account_id, "TURBO", key="a")
    ultra = await api.run(account_id, "ULTRA", key="b")
    claimed = await worker.claim(limit=5, tools=["ULTRA", "PRO"])
    assert [c["id"] for c in claimed] == [ultra["generation"]["id"]]


async def test_completing_a_run_settles_the_hold_and_moves_no_credits(
    api: Api, worker: Worker, rows: Rows
) -> None:
    account_id = await api.subscribed_account()
    generation_id = await started_run(api, worker, account_id)
    done = await worker.complete(generation_id, "https://cdn.example/robot.glb")
    assert done["__typename"] == "GenerationCompleted"
    assert done["generation"]["status"] == "SUCCEEDED"
    assert done["generation"]["resultUrl"] == "https://cdn.example/robot.glb"
    assert done["account"]["creditsTotal"] == 920
    assert await holds(rows, generation_id) == [("SUBSCRIPTION", 80, "SETTLED")]


async def test_a_failed_run_refunds_the_buckets_it_came_from(
    api: Api, worker: Worker, rows: Rows
) -> None:
    # given a run split across 39 subscription and 41 pack credits
    account_id, generation_id = await run_split_across_buckets(api, worker)
    assert await holds(rows, generation_id) == [
        ("SUBSCRIPTION", 39, "OPEN"),
        ("PACK", 41, "OPEN"),
    ]
    # when it fails
    failed = await worker.fail(generation_id, "mesh did not converge")
    # then both buckets get their part back
    assert failed["__typename"] == "GenerationFailed"
    assert failed["generation"]["failureReason"] == "mesh did not converge"
    assert failed["account"] == {"creditsTotal": 539, "subscriptionBalance": 39, "packBalance": 500}
    refunds = [e for e in await rows.ledger(account_id) if e["kind"] == "REFUND"]
    assert [(e["bucket"], e["amount"], e["reference_id"]) for e in refunds] == [
        ("SUBSCRIPTION", 39, generation_id),
        ("PACK", 41, generation_id),
    ]


async def test_a_repeated_or_late_call_returns_the_state_and_never_refunds_twice(
    api: Api, worker: Worker, rows: Rows
) -> None:
    account_id = await api.subscribed_account()
    generation_id = await started_run(api, worker, account_id)
    assert (await worker.fail(generation_id))["__typename"] == "GenerationFailed"
    again = await worker.fail(generation_id)
    late_success = await worker.complete(generation_id)
    for answer in (again, late_success):
        assert answer["__typename"] == "InvalidGenerationTransition"
        assert answer["generation"] == {"id": generation_id, "status": "FAILED"}
    assert (await api.balances(account_id))["creditsTotal"] == 1000
    assert len([e for e in await rows.ledger(account_id) if e["kind"] == "REFUND"]) == 1


async def test_a_completed_run_cannot_be_failed_into_a_refund(api: Api, worker: Worker) -> None:
    account_id = await api.subscribed_account()
    generation_id = await started_run(api, worker, account_id)
    await worker.complete(generation_id)
    answer = await worker.fail(generation_id)
    assert answer["generation"]["status"] == "SUCCEEDED"
    assert (await api.balances(account_id))["creditsTotal"] == 920


async def test_an_unclaimed_run_cannot_be_finished(api: Api, worker: Worker) -> None:
    account_id = await api.subscribed_account()
    run = await api.run(account_id)
    answer = await worker.complete(run["generation"]["id"])
    assert answer["__typename"] == "InvalidGenerationTransition"
    assert answer["generation"]["status"] == "QUEUED"


async def test_an_unknown_generation_is_a_typed_error(worker: Worker) -> None:
    answer = await worker.fail("00000000-0000-0000-0000-000000000000")
    assert answer["__typename"] == "GenerationNotFound"


async def test_credits_refunded_after_a_renewal_expire_with_their_cycle(
    api: Api, worker: Worker, clock: FrozenClock, rows: Rows
) -> None:
    # given a run held from subscription and pack credits of the January cycle
    account_id, generation_id = await run_split_across_buckets(api, worker)
    # when it fails after the monthly renewal
    clock.set(datetime(2026, 2, 15, 13, tzinfo=UTC))
    failed = await worker.fail(generation_id)
    # then nothing comes back to the new cycle: the refund expires at once, on the record
    assert failed["account"] == {
        "creditsTotal": 1000,
        "subscriptionBalance": 1000,
        "packBalance": 0,
    }
    assert await last_moves(rows, account_id, 4) == REFUNDED_AND_EXPIRED


async def test_pack_credits_refunded_under_a_new_plan_expire_with_the_old_one(
    api: Api, worker: Worker, rows: Rows
) -> None:
    # given a run held from subscription and pack credits of a plan that was then replaced
    account_id, generation_id = await run_split_across_buckets(api, worker)
    await api.as_service(CANCEL, {"id": account_id})
    await api.subscribe(account_id, "PRO")
    # when it fails under the new plan
    failed = await worker.fail(generation_id)
    # then the old plan's credits do not come back to life: both parts expire at once
    assert failed["account"] == {
        "creditsTotal": 4000,
        "subscriptionBalance": 4000,
        "packBalance": 0,
    }
    assert await last_moves(rows, account_id, 4) == REFUNDED_AND_EXPIRED


async def test_a_job_no_worker_finishes_in_time_is_failed_and_refunded(
    api: Api, worker: Worker, clock: FrozenClock, app: object
) -> None:
    account_id = await api.subscribed_account()
    queued = (await api.run(account_id, "TURBO", key="q"))["generation"]["id"]
    running = await started_run(api, worker, account_id, "PRO")
    # when the timeout (15 minutes by default) passes and the sweep runs
    clock.advance(timedelta(minutes=15))
    report = await sweep(app.state.services)  # type: ignore[attr-defined]
    # then both holds are released, once
    assert report.released_generations == 2
    assert (await api.balances(account_id))["creditsTotal"] == 1000
    assert (await sweep(app.state.services)).released_generations == 0  # type: ignore[attr-defined]
    late = await worker.complete(running)
    assert late["generation"]["status"] == "FAILED"
    assert (await worker.complete(queued))["generation"]["status"] == "FAILED"


async def test_workers_need_a_service_token(api: Api) -> None:
    account_id = await api.create_account()
    body = await api.post(CLAIM, {"limit": 1}, token=api.token(account_id))
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_claim_limit_is_bounded(api: Api) -> None:
    body = await api.post(CLAIM, {"limit": 0}, token=api.token())
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
