"""Behind PgBouncer in transaction mode: the request pool goes through it, LISTEN does not.

The concurrency, live-update and process tests run through PgBouncer too (their modules
are marked ``pgbouncer``); these check the route itself and why the settings are needed.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.persistence.engine import asyncpg_connect_args
from tests.conftest import JWT_SECRET
from tests.db import Rows
from tests.pgbouncer import PgBouncer
from tests.processes import Gateways, connected

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]


@pytest.mark.parametrize("postgres_route", ["pgbouncer"], indirect=True)
async def test_two_processes_pool_their_requests_through_pgbouncer_and_listen_directly(
    gateways: Gateways, pgbouncer: PgBouncer, postgres_rows: Rows
) -> None:
    # given two processes whose pools go through PgBouncer
    database = make_url(gateways.database_url).database or ""
    assert make_url(gateways.database_url).port == pgbouncer.port
    first, second = await asyncio.gather(gateways.start(), gateways.start())
    before = pgbouncer.transactions(database)
    # when 40 runs go through both
    async with connected(first, JWT_SECRET) as a, connected(second, JWT_SECRET) as b:
        account_id = await a.subscribed_account("PRO")
        results = await asyncio.gather(
            *((a, b)[i % 2].run(account_id, "TURBO", key=f"pooled-{i}") for i in range(40))
        )
    # then every run went through PgBouncer, one pooled transaction at least each ...
    assert {r["__typename"] for r in results} == {"GeneratorRun"}
    assert pgbouncer.transactions(database) - before >= 40
    # ... and each process LISTENs on a session of its own, straight to PostgreSQL
    listeners = await postgres_rows.all(
        "SELECT pid FROM pg_stat_activity WHERE datname = :d AND query LIKE 'LISTEN %'",
        d=database,
    )
    assert len(listeners) == 2
    assert gateways.errors() == {}


async def test_a_read_outside_a_transaction_fails_behind_pgbouncer_which_is_why_reads_begin_one(
    pgbouncer: PgBouncer, postgres_url: str
) -> None:
    # given the pooled URL with the settings README gives, on a pool of several connections
    pooled = pgbouncer.url_for(postgres_url)
    engine = create_async_engine(
        pooled, pool_size=4, max_overflow=0, connect_args=asyncpg_connect_args(pooled)
    )
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def read(connectable: object) -> int:
        async with connectable.connect() as connection:  # type: ignore[attr-defined]
            return int((await connection.execute(text("SELECT 1"))).scalar_one())

    try:
        # when reads race in autocommit: asyncpg prepares in one round trip and executes in
        # the next, which PgBouncer may hand to another server connection
        outcomes = await asyncio.gather(
            *(read(autocommit) for _ in range(200)), return_exceptions=True
        )
        # ... and the same reads inside transactions
        in_transactions = await asyncio.gather(*(read(engine) for _ in range(200)))
    finally:
        await engine.dispose()
    # then some autocommit reads lost their statement; none inside a transaction did
    lost = [o for o in outcomes if isinstance(o, Exception)]
    assert lost, "PgBouncer kept autocommit statements on one server: revisit the reads"
    assert all("prepared statement" in str(o) and "does not exist" in str(o) for o in lost), lost[
        :3
    ]
    assert in_transactions == [1] * 200
