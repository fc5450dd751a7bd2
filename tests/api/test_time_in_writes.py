"""Time in writes: a write acts at an instant taken under the account's lock, never earlier
than the cycle the account has recorded, so a clock reading from before a renewal (taken
before the lock, or by a process whose clock lags) cannot revive expired credits or cancel
the cycle that has already ended."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from app.clock import FrozenClock
from app.main import create_app
from app.services.audit import run_audit
from app.services.deps import Services
from app.services.maintenance import sweep
from app.services.wallets import Postings, bring_up_to_date, current_subscription, lock_account
from app.settings import Settings
from tests.api_client import Api, Worker
from tests.conftest import JWT_SECRET, T0
from tests.db import Rows

# The first monthly renewal of a plan started at T0.
RENEWAL = T0 + timedelta(days=31)
BEFORE_RENEWAL = RENEWAL - timedelta(seconds=1)
AFTER_RENEWAL = RENEWAL + timedelta(seconds=1)
ALLOWANCE = 20  # a Starter month here: a 80-credit Ultra run takes 20 of it and 60 of a pack

CANCEL = """
mutation($id: ID!) {
  cancelSubscription(accountId: $id) {
    creditsTotal nextRenewalAt subscription { status canceledAt endsAt }
  }
}
"""
START = """
mutation($id: ID!, $at: DateTime) {
  startSubscription(input: {accountId: $id, plan: STARTER, interval: MONTHLY, startedAt: $at}) {
    nextRenewalAt subscription { startedAt }
  }
}
"""
# What a run held from both buckets leaves in the ledger when both buckets have expired.
REFUNDED_AND_EXPIRED = [
    ("REFUND", "SUBSCRIPTION", ALLOWANCE),
    ("EXPIRY", "SUBSCRIPTION", -ALLOWANCE),
    ("REFUND", "PACK", 60),
    ("EXPIRY", "PACK", -60),
]
NOTHING_LEFT = {"creditsTotal": 0, "subscriptionBalance": 0, "packBalance": 0}


def small_allowance(database_url: str) -> Settings:
    return Settings(
        _env_file=None,
        env="test",
        database_url=database_url,
        jwt_secret=JWT_SECRET,
        starter_monthly_credits=ALLOWANCE,
        rate_limits_enabled=False,
    )


@pytest.fixture
def settings(database_url: str) -> Settings:
    return small_allowance(database_url)


@pytest.fixture
def worker(api: Api) -> Worker:
    return Worker(api)


def services_of(app: object) -> Services:
    services: Services = app.state.services  # type: ignore[attr-defined]
    return services


async def held_from_both_buckets(api: Api, worker: Worker) -> tuple[str, str]:
    """An account in its first cycle with a claimed Ultra run held from 20 + 60 credits."""
    account_id = await api.subscribed_account()
    await api.buy(account_id)
    run = await api.run(account_id, "ULTRA", key="held")
    assert run["account"] == {"creditsTotal": 440, "subscriptionBalance": 0, "packBalance": 440}
    await worker.claim(limit=1)
    return account_id, run["generation"]["id"]


def balances_of(account: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in account.items() if k in NOTHING_LEFT}


async def last_moves(rows: Rows, account_id: str, count: int) -> list[tuple[str, str, int]]:
    entries = (await rows.ledger(account_id))[-count:]
    return [(e["kind"], e["bucket"], e["amount"]) for e in entries]


async def assert_audit_ok(app: object) -> None:
    report = await run_audit(services_of(app))
    assert report.findings == []


async def test_a_fail_whose_clock_lags_a_recorded_renewal_expires_the_held_credits(
    api: Api, worker: Worker, clock: FrozenClock, rows: Rows, app: object
) -> None:
    # given a run held from the first cycle, and the renewal recorded by another write
    account_id, generation_id = await held_from_both_buckets(api, worker)
    clock.set(AFTER_RENEWAL)
    renewed = await api.run(account_id, "TURBO", key="records-the-renewal")
    assert renewed["account"] == NOTHING_LEFT
    # when the fail reads a clock from before that renewal
    clock.set(BEFORE_RENEWAL)
    failed = await worker.fail(generation_id)
    # then it acts at the renewal the account recorded: nothing held comes back to life
    assert failed["account"] == NOTHING_LEFT
    assert failed["generation"]["finishedAt"] == RENEWAL.isoformat()
    assert await last_moves(rows, account_id, 4) == REFUNDED_AND_EXPIRED
    assert [r["remaining"] for r in await rows.all("SELECT remaining FROM pack_purchases")] == [0]
    clock.set(AFTER_RENEWAL)
    assert balances_of(await api.balances(account_id)) == NOTHING_LEFT
    await assert_audit_ok(app)


async def test_a_purchase_whose_clock_lags_a_recorded_renewal_is_dated_in_the_new_cycle(
    api: Api, clock: FrozenClock
) -> None:
    # given the renewal recorded by another write
    account_id = await api.subscribed_account()
    clock.set(AFTER_RENEWAL)
    await api.run(account_id, "TURBO", key="records-the-renewal")
    # when a purchase reads a clock from before it
    clock.set(BEFORE_RENEWAL)
    bought = await api.buy(account_id)
    # then the pack belongs to the cycle the account is in and lasts to its end
    assert bought["purchase"]["purchasedAt"] == RENEWAL.isoformat()
    assert bought["purchase"]["expiresAt"] == (RENEWAL + timedelta(days=28)).isoformat()


async def test_a_cancel_whose_clock_lags_a_recorded_renewal_cancels_the_new_cycle(
    api: Api, clock: FrozenClock, app: object
) -> None:
    # given the February renewal recorded by another write, and a pack bought in February
    account_id = await api.subscribed_account()
    clock.set(AFTER_RENEWAL)
    await api.buy(account_id)
    # when the cancel reads a clock from before the renewal
    clock.set(BEFORE_RENEWAL)
    canceled = (await api.as_service(CANCEL, {"id": account_id}))["cancelSubscription"]
    # then it cancels the cycle the account is in: its credits last exactly to its end
    ends = RENEWAL + timedelta(days=28)
    assert canceled == {
        "creditsTotal": ALLOWANCE + 500,
        "nextRenewalAt": None,
        "subscription": {
            "status": "CANCELED",
            "canceledAt": RENEWAL.isoformat(),
            "endsAt": ends.isoformat(),
        },
    }
    clock.set(ends - timedelta(seconds=1))
    assert (await api.balances(account_id))["creditsTotal"] == ALLOWANCE + 500
    clock.set(ends)
    after = await api.balances(account_id)
    assert (after["creditsTotal"], after["subscription"]["status"]) == (0, "EXPIRED")
    await assert_audit_ok(app)


async def test_a_stale_sweep_reading_cannot_revive_credits_a_renewal_expired(
    api: Api, worker: Worker, clock: FrozenClock, rows: Rows, app: object
) -> None:
    # given a timed-out run held from the first cycle, and the renewal recorded since
    account_id, generation_id = await held_from_both_buckets(api, worker)
    clock.set(AFTER_RENEWAL)
    await api.run(account_id, "TURBO", key="records-the-renewal")
    # when the sweep releases it with a reading from before the renewal (a lagging process)
    clock.set(BEFORE_RENEWAL)
    report = await sweep(services_of(app))
    # then the released credits expire with their cycle
    assert report.released_generations == 1
    assert await last_moves(rows, account_id, 4) == REFUNDED_AND_EXPIRED
    assert (await rows.all("SELECT status FROM generations WHERE id = :g", g=generation_id)) == [
        {"status": "FAILED"}
    ]
    clock.set(AFTER_RENEWAL)
    assert balances_of(await api.balances(account_id)) == NOTHING_LEFT
    await assert_audit_ok(app)


async def test_a_start_given_in_another_offset_renews_on_calendar_months_in_utc(
    api: Api, clock: FrozenClock
) -> None:
    # given a start at 2027-01-30 20:00 in New York, which is Jan 31 01:00 in UTC
    clock.set(datetime(2027, 2, 10, tzinfo=UTC))
    account_id = await api.create_account()
    # when the plan is started with that offset
    started = await api.as_service(START, {"id": account_id, "at": "2027-01-30T20:00:00-05:00"})
    # then the first cycle ends on Feb 28 01:00Z, and every instant is answered in UTC
    assert started["startSubscription"] == {
        "nextRenewalAt": "2027-02-28T01:00:00+00:00",
        "subscription": {"startedAt": "2027-01-31T01:00:00+00:00"},
    }
    me = await api.balances(account_id)
    assert (me["nextRenewalAt"], me["subscription"]["startedAt"]) == (
        "2027-02-28T01:00:00+00:00",
        "2027-01-31T01:00:00+00:00",
    )


async def test_a_start_before_the_first_utc_instant_is_bad_input_and_changes_nothing(
    api: Api, rows: Rows
) -> None:
    account_id = await api.create_account()
    body = await api.post(
        START, {"id": account_id, "at": "0001-01-01T00:00:00+01:00"}, token=api.token()
    )
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "startedAt"}
    assert await rows.ledger(account_id) == []
    assert await rows.count("subscriptions") == 0


async def until_one_waits_on_a_lock(rows: Rows, database: str) -> None:
    """Return once a backend of ``database`` waits on a lock (the caller bounds the wait)."""
    while True:
        found = await rows.all(
            "SELECT count(*) AS n FROM pg_stat_activity"
            " WHERE datname = :db AND wait_event_type = 'Lock'",
            db=database,
        )
        if int(found[0]["n"]):
            return
        await asyncio.sleep(0.01)


@pytest.mark.postgres_only
async def test_a_fail_queued_on_the_row_lock_behind_a_renewal_expires_the_held_credits(
    postgres_url: str, clock: FrozenClock
) -> None:
    app = create_app(small_allowance(postgres_url), clock)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            await fail_queued_behind_a_renewal(Api(http, JWT_SECRET, clock), app, postgres_url)
    finally:
        await services_of(app).db.dispose()


async def fail_queued_behind_a_renewal(api: Api, app: Any, postgres_url: str) -> None:
    # given a run held from the first cycle, on PostgreSQL
    clock = api.clock
    worker = Worker(api)
    account_id, generation_id = await held_from_both_buckets(api, worker)
    services = services_of(app)
    rows = Rows(services.db.engine)
    database = make_url(postgres_url).database or ""
    # when another writer holds the account's row lock, a fail sent just before the renewal
    # queues behind it, and that writer records the renewal before it lets go
    async with services.db.writing() as uow:
        account = await lock_account(uow, account_id)
        clock.set(BEFORE_RENEWAL)
        failing = asyncio.create_task(worker.fail(generation_id))
        async with asyncio.timeout(30):  # a bound on a stuck test, not a timing assertion
            await until_one_waits_on_a_lock(rows, database)
        clock.set(AFTER_RENEWAL)
        subscription, now = await current_subscription(uow, account), clock.now()
        await bring_up_to_date(uow, account, subscription, Postings(uow, account, now), now)
        await uow.commit()
    failed = await failing
    # then the fail judges the held credits in the renewed cycle: they expire
    assert failed["account"] == {
        "creditsTotal": ALLOWANCE,
        "subscriptionBalance": ALLOWANCE,
        "packBalance": 0,
    }
    assert await last_moves(rows, account_id, 4) == REFUNDED_AND_EXPIRED
    await assert_audit_ok(app)
