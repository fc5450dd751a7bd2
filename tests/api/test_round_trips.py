"""A write on PostgreSQL is five round trips at most: BEGIN, lock, read the state, write the
plan, COMMIT. So are a pack's grant and a generation's end (completed, failed, canceled). A
run is two (its state and its plan, each in autocommit, a process's runs of one account
taking turns: tests/api/test_unlocked_runs.py), four under the lock (BEGIN and the lock in one
simple query, the state, the plan, COMMIT).

Counted in the process by ``Database.recording``: every statement sent, through SQLAlchemy's
engine (``before_cursor_execute``) or the driver lane, plus each BEGIN and COMMIT.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

import httpx
import pytest

from app.clock import FrozenClock
from app.main import create_app
from app.settings import Settings
from tests.api_client import Api, Worker
from tests.conftest import JWT_SECRET, ApiFactory
from tests.db import Rows, sent_statements

# The state and the plan, without the lock.
UNLOCKED_RUN_ROUND_TRIPS = 2
# BEGIN and the lock in one simple query, the state, the plan, COMMIT.
MAX_RUN_ROUND_TRIPS = 4
MAX_WRITE_ROUND_TRIPS = 5


def round_trips(app: Any) -> AbstractContextManager[list[str]]:
    return sent_statements(app, transactions=True)


def begins(trip: str) -> bool:
    """BEGIN alone, or BEGIN and a first statement in one simple query."""
    return trip == "BEGIN" or trip.startswith("BEGIN;")


def shown(trips: list[str]) -> list[str]:
    return [trip[:60] for trip in trips]


def the_write(sent: list[str]) -> list[str]:
    """The round trips of the one transaction that wrote ledger entries, BEGIN to COMMIT."""
    transactions: list[list[str]] = []
    for trip in sent:
        if begins(trip):
            transactions.append([])
        if transactions:
            transactions[-1].append(trip)
    writes = [t for t in transactions if any("INSERT INTO ledger_entries" in trip for trip in t)]
    assert len(writes) == 1, [shown(t) for t in transactions]
    return writes[0]


def postgres_only(rows: Rows) -> None:
    if rows.engine.dialect.name != "postgresql":
        pytest.skip("round trips are counted on PostgreSQL; SQLite is in the process")


async def test_a_run_takes_two_round_trips_on_postgres(api: Api, rows: Rows, app: Any) -> None:
    postgres_only(rows)
    # given an account that has run once (connections and statements warmed up)
    account_id = await api.subscribed_account()
    await api.run(account_id, "TURBO", key="warm")
    # when
    with round_trips(app) as sent:
        run = await api.run(account_id, "TURBO", key="counted")
    # then its state and its plan, neither in a transaction
    assert run["account"]["creditsTotal"] == 960
    assert len(sent) == UNLOCKED_RUN_ROUND_TRIPS, shown(sent)
    assert sent[0].startswith("SELECT") and sent[1].startswith("WITH acc AS")


async def test_a_run_under_the_lock_takes_at_most_four_round_trips_on_postgres(
    rows: Rows, make_api: ApiFactory
) -> None:
    postgres_only(rows)
    # given a gateway whose runs always take the lock
    api = await make_api(unlocked_runs=False)
    # and an account that has run once (warmed up)
    account_id = await api.subscribed_account()
    await api.run(account_id, "TURBO", key="warm")
    # when
    with round_trips(api.app) as sent:
        run = await api.run(account_id, "TURBO", key="counted")
    # then BEGIN with the lock (which moves the row's version), the state, the plan, COMMIT
    assert run["account"]["creditsTotal"] == 960
    assert len(sent) <= MAX_RUN_ROUND_TRIPS, shown(sent)
    assert begins(sent[0]) and "SET version = version + 1" in sent[0] and sent[-1] == "COMMIT"


async def test_a_run_that_records_renewals_and_spends_packs_is_still_two_round_trips(
    api: Api, rows: Rows, clock: FrozenClock, app: Any
) -> None:
    postgres_only(rows)
    # given an account with a pack, two renewals due, warmed up
    account_id = await api.subscribed_account()
    await api.buy(account_id)
    await api.run(account_id, "TURBO", key="warm")
    clock.advance(timedelta(days=62))
    # when
    with round_trips(app) as sent:
        run = await api.run(account_id, "ULTRA", key="counted")
    # then renewals and the spend were written, in the run's two round trips
    assert run["account"]["creditsTotal"] == 1000 - 80
    assert len(sent) == UNLOCKED_RUN_ROUND_TRIPS, shown(sent)


async def test_a_packs_grant_takes_at_most_five_round_trips_on_postgres(
    api: Api, rows: Rows, app: Any
) -> None:
    postgres_only(rows)
    # given an account that has bought a pack (connections and statements warmed up)
    account_id = await api.subscribed_account()
    await api.buy(account_id, key="warm")
    # when the sandbox confirms the next purchase at once
    with round_trips(app) as sent:
        bought = await api.buy(account_id, key="counted")
    # then the grant (lock, the state with the purchase, the plan with its status) was one
    # transaction of at most five round trips
    assert bought["account"]["packBalance"] == 1000
    grant = the_write(sent)
    assert len(grant) <= MAX_WRITE_ROUND_TRIPS, shown(grant)
    assert grant[0] == "BEGIN" and grant[-1] == "COMMIT"
    (purchase,) = await rows.all(
        "SELECT status, remaining, fulfilled_at FROM pack_purchases WHERE id = :p",
        p=bought["purchase"]["id"],
    )
    assert (purchase["status"], purchase["remaining"]) == ("FULFILLED", 500)
    assert purchase["fulfilled_at"] is not None


async def test_a_payment_event_granting_after_a_renewal_is_still_five_round_trips(
    settings: Settings, rows: Rows, clock: FrozenClock
) -> None:
    postgres_only(rows)
    # given a gateway whose sandbox checkouts wait for their payment
    waiting = Settings(_env_file=None, **{**settings.model_dump(), "sandbox_payments": "pending"})
    app = create_app(waiting, clock)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            await a_payment_event_granting_after_a_renewal(Api(http, JWT_SECRET, clock), app, clock)
    finally:
        await app.state.services.payments.aclose()
        await app.state.services.db.dispose()


async def a_payment_event_granting_after_a_renewal(
    pending: Api, app: Any, clock: FrozenClock
) -> None:
    # given a purchase whose payment arrives after the renewal fell due (warmed up)
    account_id = await pending.subscribed_account()
    await settle(pending, await pending_purchase(pending, account_id, "warm"))
    counted = await pending_purchase(pending, account_id, "counted")
    clock.advance(timedelta(days=31))
    # when the provider's event is acted on
    with round_trips(app) as sent:
        settled = await settle(pending, counted)
    # then the renewal came first (the warm pack expired with it), then the grant, in one
    # transaction of at most five round trips
    assert settled["__typename"] == "PackPurchased"
    assert settled["account"] == {"creditsTotal": 1000 + 500, "packBalance": 500}
    grant = the_write(sent)
    assert len(grant) <= MAX_WRITE_ROUND_TRIPS, shown(grant)


@pytest.mark.parametrize("ending", ["complete", "fail"])
async def test_a_generations_end_takes_at_most_five_round_trips_on_postgres(
    api: Api, rows: Rows, app: Any, ending: str
) -> None:
    postgres_only(rows)
    # given two claimed runs, one of them ended already (warmed up)
    worker = Worker(api)
    account_id = await api.subscribed_account()
    warm = await api.run(account_id, "TURBO", key="warm")
    await api.run(account_id, "TURBO", key="counted")
    claimed = [g for g in await worker.claim(limit=100) if g["accountId"] == account_id]
    first, second = sorted(claimed, key=lambda g: str(g["id"]) != warm["generation"]["id"])
    await getattr(worker, ending)(first["id"])
    # when
    with round_trips(app) as sent:
        ended = await getattr(worker, ending)(second["id"])
    # then
    assert ended["generation"]["status"] == ("SUCCEEDED" if ending == "complete" else "FAILED")
    # (each TURBO run costs 20; a failure gives it back)
    assert ended["account"]["creditsTotal"] == (960 if ending == "complete" else 1000)
    assert len(sent) <= MAX_WRITE_ROUND_TRIPS, shown(sent)
    assert sent[0] == "BEGIN" and sent[-1] == "COMMIT"


async def test_canceling_a_queued_run_takes_at_most_five_round_trips_on_postgres(
    api: Api, rows: Rows, app: Any
) -> None:
    postgres_only(rows)
    # given two queued runs, one canceled already (warmed up)
    account_id = await api.subscribed_account()
    first = await api.run(account_id, "TURBO", key="warm")
    second = await api.run(account_id, "TURBO", key="counted")
    await cancel(api, account_id, first["generation"]["id"])
    # when
    with round_trips(app) as sent:
        canceled = await cancel(api, account_id, second["generation"]["id"])
    # then
    assert canceled["__typename"] == "GenerationCanceled"
    assert canceled["account"]["creditsTotal"] == 1000
    assert len(sent) <= MAX_WRITE_ROUND_TRIPS, shown(sent)


CANCEL = """
mutation Cancel($id: ID!) {
  cancelGeneration(id: $id) {
    __typename
    ... on GenerationCanceled { account { creditsTotal } }
  }
}
"""


async def cancel(api: Api, account_id: str, generation_id: str) -> Any:
    return (await api.as_user(account_id, CANCEL, {"id": generation_id}))["cancelGeneration"]


SETTLE = """
mutation Settle($id: ID!) {
  sandboxSettlePayment(purchaseId: $id, outcome: PAID) {
    __typename
    ... on PackPurchased { account { creditsTotal packBalance } }
  }
}
"""


async def settle(api: Api, purchase_id: str) -> Any:
    return (await api.as_service(SETTLE, {"id": purchase_id}))["sandboxSettlePayment"]


BUY = """
mutation Buy($key: String!) {
  purchasePack(input: {packId: "pack-500", idempotencyKey: $key}) {
    ... on PaymentPending { purchase { id } }
  }
}
"""


async def pending_purchase(api: Api, account_id: str, key: str) -> str:
    data = await api.as_user(account_id, BUY, {"key": key})
    return str(data["purchasePack"]["purchase"]["id"])
