"""The driver lane answers what SQLAlchemy answers, is fenced, and keeps its transactions.

The lane (app/persistence/driver.py) runs PostgreSQL's hot statements straight on asyncpg.
Each one is run here both ways on the same rows and the answers compared; the switch and the
version fence turn it off; a lane transaction rolls back unless committed, and has no ORM.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from app.clock import FrozenClock
from app.domain.errors import AccountNotFound, DatabaseUnavailable
from app.domain.model import Plan, Tool
from app.main import create_app
from app.persistence import plans
from app.persistence.driver import PINNED, DriverConnection, lane_enabled
from app.persistence.unavailable import is_unavailable
from app.persistence.unit_of_work import Database
from app.services.generations import run_generator
from app.settings import Settings
from tests.api_client import Api, Worker
from tests.conftest import JWT_SECRET
from tests.db import Rows

on_postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


def lane_of(app: Any) -> Database:
    db: Database = app.state.services.db
    assert db.lane is not None, "the lane is on by default on PostgreSQL"
    return db


async def an_account_with_everything(api: Api, rows: Rows, clock: FrozenClock) -> str:
    """Subscription, a pack, a bonus lot, an open run (holds) and an idempotency record."""
    account_id = await api.subscribed_account("PRO", "ANNUAL")
    await api.buy(account_id)
    await rows.execute(
        "INSERT INTO credit_adjustments (id, account_id, amount, remaining, reason, actor,"
        " created_at, expires_at) VALUES ('bonus-1', :a, 50, 50, 'goodwill', 'support:ada',"
        " :now, :later)",
        a=account_id,
        now=clock.now(),
        later=clock.now() + timedelta(days=10),
    )
    await api.run(account_id, "ULTRA", key="open-run")
    return account_id


async def both_ways(db: Database, call: Any) -> tuple[Any, Any]:
    """``call(connection)`` through SQLAlchemy's engine, then through the lane."""
    async with db.engine.connect() as connection:
        assert isinstance(connection, AsyncConnection)
        through_engine = await call(connection)
    assert db.lane is not None
    async with db.lane.acquire() as lane_connection:
        assert isinstance(lane_connection, DriverConnection)
        through_lane = await call(lane_connection)
    return through_engine, through_lane


def unversioned(found: Any) -> Any:
    """An answer with its account's version left out (each lock moves it)."""
    if isinstance(found, plans.LockedAccount):
        return replace(found, version=0)
    return found


@on_postgres
async def test_every_lane_statement_answers_what_sqlalchemy_answers(
    api: Api, rows: Rows, app: Any, clock: FrozenClock
) -> None:
    # given an account whose state has every kind of row
    db = lane_of(app)
    account_id = await an_account_with_everything(api, rows, clock)
    (generation,) = await rows.all("SELECT id FROM generations")
    generation_id = generation["id"]
    (purchase,) = await rows.all("SELECT id FROM pack_purchases")
    purchase_id = purchase["id"]
    # when each statement the lane runs is run both ways
    locked_engine, _ = await both_ways(db, lambda c: plans.lock_account(c, account_id))
    assert locked_engine is not None
    calls = {
        "lock": lambda c: plans.lock_account(c, account_id),
        "state": lambda c: plans.read_state(c, locked_engine, key="open-run"),
        "state with a generation's held lots": lambda c: plans.read_state(
            c, locked_engine, generation_id=generation_id
        ),
        "account and state": lambda c: plans.read_account_state(c, account_id, "open-run"),
        "missing account and state": lambda c: plans.read_account_state(c, "nobody", None),
        "owner of a generation": lambda c: plans.lock_owner_of_generation(c, generation_id),
        "owner of a purchase": lambda c: plans.lock_owner_of_purchase(c, purchase_id),
        "ending state": lambda c: plans.read_ending_state(c, locked_engine, generation_id),
        "settling state": lambda c: plans.read_settling_state(c, locked_engine, purchase_id),
        "generation": lambda c: plans.generation(c, generation_id),
        "missing generation": lambda c: plans.generation(c, "no-such-generation"),
        "tariffs": plans.tariffs,
        "accounts": lambda c: plans.stored_accounts(c, [account_id, "nobody"]),
    }
    # then both answer the same, field by field (datetimes aware, in UTC, alike), but the
    # version, which each lock moves (and the engine's connections roll back)
    for name, call in calls.items():
        through_engine, through_lane = await both_ways(db, call)
        assert unversioned(through_engine) == unversioned(through_lane), name
    state = await both_ways(db, calls["state"])
    # and the state read with the account's row is the lock's row and the state read after it
    account, after = (await both_ways(db, calls["account and state"]))[1]
    assert account.version == (await rows.account(account_id))["version"]
    assert unversioned(account) == unversioned(locked_engine) and after == state[1]
    assert (await both_ways(db, calls["missing account and state"]))[1] is None
    assert state[1].lots and state[1].bonus_lots and state[1].idempotency is not None
    ending = (await both_ways(db, calls["ending state"]))[1]
    assert ending.holds and ending.generation.id == generation_id
    settling = (await both_ways(db, calls["settling state"]))[1]
    assert settling.purchase.id == purchase_id and settling.pack_on_sale
    (view,) = (await both_ways(db, calls["accounts"]))[1]
    assert view.created_at.utcoffset() == timedelta(0)


@on_postgres
async def test_the_hot_paths_run_on_the_lane_and_none_through_sqlalchemy(
    api: Api, app: Any
) -> None:
    # given an account (connections warmed up)
    db = lane_of(app)
    account_id = await api.subscribed_account()
    await api.run(account_id, "TURBO", key="warm")
    # when the editor reads and a run is made, counting what SQLAlchemy's engine sends
    lane_sent: list[str] = []
    db.lane.listeners.append(lane_sent.append)  # type: ignore[union-attr]
    try:
        with db.recording() as everything:
            await api.balances(account_id)
            await api.run(account_id, "TURBO", key="counted")
    finally:
        db.lane.listeners.remove(lane_sent.append)  # type: ignore[union-attr]
    # then every statement went through the lane: the read, then the run's state and plan
    # (an account with no other run in flight: neither locked nor in a transaction)
    assert everything == [" ".join(sql.split()) for sql in lane_sent]
    assert lane_sent[0].startswith("SELECT") and lane_sent[-1].lstrip().startswith("WITH")
    assert "BEGIN" not in lane_sent and "COMMIT" not in lane_sent


@on_postgres
async def test_a_grant_and_a_generations_end_run_on_the_lane(api: Api, app: Any) -> None:
    # given a claimed run and an account that has bought a pack (warmed up)
    db = lane_of(app)
    account_id = await api.subscribed_account()
    await api.buy(account_id, key="warm")
    run = await api.run(account_id, "TURBO", key="run")
    await Worker(api).claim(limit=100)
    # when a pack is granted and the run completed, counting what each path is sent
    lane_sent: list[str] = []
    db.lane.listeners.append(lane_sent.append)  # type: ignore[union-attr]
    try:
        with db.recording() as everything:
            await api.buy(account_id, key="counted")
            ended = await Worker(api).complete(run["generation"]["id"])
    finally:
        db.lane.listeners.remove(lane_sent.append)  # type: ignore[union-attr]
    # then the grant's and the ending's transactions went through the lane: the plans'
    # writes (the purchase's opening is the ORM's, through SQLAlchemy)
    assert ended["__typename"] == "GenerationCompleted"
    writes = [sql for sql in everything if sql.startswith("WITH acc AS")]
    assert len(writes) == 2
    lane_only = [" ".join(sql.split()) for sql in lane_sent]
    assert all(sql in lane_only for sql in writes)
    assert sum(sql.startswith("WITH locked_") for sql in lane_only) == 2


@on_postgres
async def test_a_lane_transaction_rolls_back_unless_committed(
    api: Api, rows: Rows, app: Any
) -> None:
    db = lane_of(app)
    account_id = await api.subscribed_account()
    # when a lane transaction locks and writes, then leaves with an error
    with pytest.raises(RuntimeError):
        async with db.writing(lane=True) as uow:
            account = await uow.lock_account(account_id)
            assert account is not None
            await uow.tariffs()
            connection = await uow._core()
            await connection.execute(
                plans.sa.text("UPDATE accounts SET pack_balance = 999 WHERE id = :a"),
                {"a": account_id},
            )
            raise RuntimeError("the use case failed")
    # then nothing it wrote is kept, and its connection went back to the pool free
    assert (await rows.account(account_id))["pack_balance"] == 0
    async with db.writing(lane=True) as uow:
        assert await uow.lock_account(account_id) is not None


@on_postgres
async def test_a_lane_transaction_has_no_orm(api: Api, app: Any) -> None:
    db = lane_of(app)
    async with db.writing(lane=True) as uow:
        with pytest.raises(AttributeError):
            uow.generations  # noqa: B018 -- a repository: the ORM's session is not there


@on_postgres
async def test_the_switch_turns_the_lane_off(settings: Settings, clock: FrozenClock) -> None:
    app = create_app(settings.model_copy(update={"driver_lane": False}), clock)
    try:
        assert app.state.services.db.lane is None
    finally:
        await app.state.services.db.dispose()


def test_the_lane_runs_only_at_the_pinned_versions(caplog: pytest.LogCaptureFixture) -> None:
    assert lane_enabled(True, installed=PINNED.get) is True
    other = {**PINNED, "asyncpg": "0.33.0"}
    with caplog.at_level(logging.WARNING, logger="creditgate"):
        assert lane_enabled(True, installed=other.get) is False
    assert "driver lane off: asyncpg 0.33.0 installed" in caplog.text
    assert lane_enabled(False, installed=PINNED.get) is False


def test_the_pins_are_the_installed_versions_and_pyprojects() -> None:
    import tomllib
    from importlib.metadata import version
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    dependencies = project["project"]["dependencies"]
    for name, pinned in PINNED.items():
        assert version(name) == pinned
        assert any(
            d.lower().startswith(name) and d.endswith(f"=={pinned}") for d in dependencies
        ), name


@on_postgres
async def test_a_run_writes_the_same_rows_with_the_lane_on_and_off(
    settings: Settings, clock: FrozenClock, rows: Rows
) -> None:
    # given two gateways on one database, one with the lane and one without
    written: dict[bool, list[Any]] = {}
    for lane in (True, False):
        app = create_app(settings.model_copy(update={"driver_lane": lane}), clock)
        assert (app.state.services.db.lane is not None) is lane
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                api = Api(client, JWT_SECRET, clock)
                # when each runs the same story: a pack, runs that spill into it, a replay
                account_id = await api.subscribed_account()
                await api.buy(account_id)
                runs = [await api.run(account_id, "ULTRA", key=f"r{i}") for i in range(13)]
                replay = await api.run(account_id, "ULTRA", key="r12")
                assert replay["generation"]["id"] == runs[-1]["generation"]["id"]
                written[lane] = [
                    [
                        {k: v for k, v in entry.items() if k != "reference_id"}
                        for entry in await rows.ledger(account_id)
                    ],
                    await rows.all(
                        "SELECT bucket, amount, status FROM holds WHERE account_id = :a"
                        " ORDER BY id",
                        a=account_id,
                    ),
                    {
                        k: v
                        for k, v in (await rows.account(account_id)).items()
                        # (the version counts locks and writes: fewer where runs go unlocked)
                        if k not in ("id", "email", "subscription_id", "version")
                    },
                    [r["account"] for r in runs],
                ]
        finally:
            await app.state.services.db.dispose()
    # then both wrote the same ledger, holds and balances, and answered the same
    assert written[True] == written[False]
    assert written[True][0], "the story wrote ledger entries"


@on_postgres
async def test_a_lane_connection_lost_between_statements_is_unavailable_not_unexpected(
    api: Api, rows: Rows, app: Any
) -> None:
    # given a lane transaction that has locked an account
    db = lane_of(app)
    account_id = await api.subscribed_account()
    with pytest.raises(DatabaseUnavailable):
        async with db.writing(lane=True) as uow:
            assert await uow.lock_account(account_id) is not None
            connection = await uow._core()
            (row,) = await connection.execute(plans.sa.text("SELECT pg_backend_pid() AS pid"), {})
            # when its server connection is killed while it is idle in the transaction
            await rows.execute("SELECT pg_terminate_backend(:pid)", pid=row.pid)
            for _ in range(100):  # until asyncpg has read the server's goodbye
                if connection._connection.is_closed():  # type: ignore[union-attr]
                    break
                await asyncio.sleep(0.01)
            # then the next statement says the database is not there
            await uow.account_state(await uow.lock_account(account_id))  # type: ignore[arg-type]
    # and the lane serves the next transaction on a new connection
    async with db.writing(lane=True) as uow:
        assert await uow.lock_account(account_id) is not None


@on_postgres
async def test_a_lane_statement_cancelled_half_way_leaves_no_busy_connection_behind(
    settings: Settings, clock: FrozenClock
) -> None:
    # given a lane of one connection
    app = create_app(settings.model_copy(update={"db_pool_size": 1}), clock)
    db = lane_of(app)
    try:

        async def slow_transaction() -> None:
            async with db.writing(lane=True) as uow:
                connection = await uow._core()
                await connection.execute(plans.sa.text("SELECT pg_sleep(5)"), {})

        # when a statement is cancelled while the server still runs it (a client gone)
        task = asyncio.create_task(slow_transaction())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # then the next transaction gets a connection that is not busy with it
        async with asyncio.timeout(10):
            assert await db.tariffs()
            async with db.writing(lane=True) as uow:
                assert await uow.tariffs()
    finally:
        await db.dispose()


@on_postgres
async def test_a_lane_statement_ended_by_the_server_leaves_no_busy_connection_behind(
    settings: Settings, clock: FrozenClock, rows: Rows
) -> None:
    # given a lane of one connection, in a transaction running a long statement
    app = create_app(settings.model_copy(update={"db_pool_size": 1}), clock)
    db = lane_of(app)
    try:
        pids: list[int] = []
        started = asyncio.Event()

        async def slow_transaction() -> None:
            async with db.writing(lane=True) as uow:
                connection = await uow._core()
                (row,) = await connection.execute(plans.sa.text("SELECT pg_backend_pid() p"), {})
                pids.append(row.p)
                started.set()
                await connection.execute(plans.sa.text("SELECT pg_sleep(5)"), {})

        task = asyncio.create_task(slow_transaction())
        async with asyncio.timeout(10):
            await started.wait()
        # when the server ends it with an error (an administrator, a failover)
        await rows.execute("SELECT pg_terminate_backend(:pid)", pid=pids[0])
        with pytest.raises(DatabaseUnavailable):
            await task
        # then the next transactions get a connection that is not busy with it
        async with asyncio.timeout(10):
            for _ in range(3):
                async with db.writing(lane=True) as uow:
                    assert await uow.tariffs()
    finally:
        await db.dispose()


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.InternalClientError(
            "cannot switch to state 15; another operation (2) is in progress"
        ),
        asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"),
    ],
)
def test_a_lane_connection_the_server_ended_counts_as_the_database_gone(error: Exception) -> None:
    # a pooled connection ended while idle (a failover), or lost between two statements
    assert is_unavailable(error)


def test_other_client_errors_are_not_taken_for_the_database_gone() -> None:
    assert not is_unavailable(asyncpg.InterfaceError("the server expects 4 arguments"))


@on_postgres
async def test_a_runs_count_of_active_generations_reads_only_that_accounts_active_runs(
    api: Api, app: Any
) -> None:
    # given an account, and a backlog of queued runs elsewhere
    db = lane_of(app)
    account_id = await api.subscribed_account()
    # when PostgreSQL plans the state read as a prepared statement (generic plan)
    compiled = db.lane.statements[plans.STATE]  # type: ignore[union-attr]
    arguments = compiled.arguments({"account_id": account_id, "key": "k", "generation_id": None})
    async with db.lane.acquire() as connection:  # type: ignore[union-attr]
        raw = connection._connection
        await raw.execute("SET plan_cache_mode = force_generic_plan")
        try:
            plan = "\n".join(r[0] for r in await raw.fetch("EXPLAIN " + compiled.sql, *arguments))
        finally:
            await raw.execute("RESET plan_cache_mode")
    # then the count reads the partial index of active runs, never the global queue
    assert "ix_generations_active" in plan, plan
    assert "ix_generations_queue" not in plan, plan


def test_only_an_id_made_of_an_ids_characters_goes_into_the_merged_lock_as_a_literal() -> None:
    # an account's id (a UUID) rides with BEGIN in one simple query
    account_id = "0b5c2d7e-3f1a-4c8e-9d2b-6a7f8e9d0c1b"
    assert plans.begin_locking(account_id) == (
        f"BEGIN; UPDATE accounts SET version = version + 1 WHERE id = '{account_id}'"
    )
    # anything else takes the lock's own statement, with the id as a parameter
    for odd in ("x' OR '1'='1", "a;b", "", "caf\u00e9", "a" * 65, "a\\b"):
        assert plans.begin_locking(odd) is None, odd


@on_postgres
async def test_a_run_for_an_id_that_cannot_be_a_literal_is_refused_as_absent(
    app: Any, clock: FrozenClock
) -> None:
    # given an id no account has, of characters the merged lock refuses
    services = app.state.services
    # when it runs a generator, then the account is absent, through the lock's statement
    with pytest.raises(AccountNotFound):
        await run_generator("nobody' OR '1'='1", Tool.TURBO, "key-1", None, services)


@on_postgres
async def test_a_run_never_gets_a_connection_the_server_ended_while_it_sat_idle(
    api: Api, settings: Settings, clock: FrozenClock, rows: Rows
) -> None:
    # given a lane of one connection that has served a run and sits idle in its pool
    account_id = await api.subscribed_account()
    app = create_app(settings.model_copy(update={"db_pool_size": 1}), clock)
    db, services = lane_of(app), app.state.services
    try:
        await run_generator(account_id, Tool.TURBO, "before", None, services)
        async with db.writing(lane=True) as uow:
            connection = await uow._core()
            (row,) = await connection.execute(plans.sa.text("SELECT pg_backend_pid() p"), {})
        # when the server ends that connection (a node shutting down in a failover)
        await rows.execute("SELECT pg_terminate_backend(:pid)", pid=row.p)
        async with asyncio.timeout(10):
            ended = False
            while not ended:  # the server's side gone, as asyncpg is told meanwhile
                await asyncio.sleep(0.01)
                ended = not await rows.all("SELECT 1 FROM pg_stat_activity WHERE pid = :p", p=row.p)
        # then the next run is served on a new connection, not answered try again
        run = await run_generator(account_id, Tool.TURBO, "after", None, services)
        assert run.account.credits_total == 1000 - 2 * 20
    finally:
        await db.dispose()


async def test_a_state_read_counts_active_runs_only_where_a_cap_can_apply(
    api: Api, app: Any
) -> None:
    # given a PRO account with three runs queued
    account_id = await api.subscribed_account("PRO")
    for n in range(3):
        await api.run(account_id, "TURBO", key=f"k{n}")
    # when its state is read with caps that leave PRO uncapped, then with a cap for PRO
    async with app.state.services.db.writing() as uow:
        account = await uow.lock_account(account_id)
        assert account is not None
        uncapped = await uow.account_state(account, caps={Plan.STARTER: 2, Plan.PRO: 0})
        capped = await uow.account_state(account, caps={Plan.STARTER: 0, Plan.PRO: 5})
        unasked = await uow.account_state(account)
    # then only the capped read counts them (an uncapped count is unbounded and unused)
    assert (uncapped.active_generations, capped.active_generations) == (0, 3)
    assert unasked.active_generations == 0
