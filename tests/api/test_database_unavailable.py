"""A database that is not there, or a connection that breaks mid-transaction (a failover):
the client reads TRY_AGAIN, never an unexpected error or a wrong answer, and the same
idempotency key then applies the request once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from app.clock import FrozenClock
from app.events.postgres import asyncpg_dsn
from app.main import create_app
from app.settings import Settings
from tests.api_client import RUN_GENERATOR, Api
from tests.conftest import JWT_SECRET
from tests.db import Rows
from tests.processes import free_port

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]
ME = "query Me { me { id creditsTotal } }"


@pytest.fixture
async def unreachable(settings: Settings, clock: FrozenClock) -> AsyncIterator[Api]:
    """An app whose PostgreSQL port has nobody listening (a primary gone, none promoted)."""
    gone = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/creditgate"
    application = create_app(settings.model_copy(update={"database_url": gone}), clock)
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield Api(client, JWT_SECRET, clock)
    await application.state.services.db.dispose()


async def test_a_write_with_no_database_answers_try_again(unreachable: Api) -> None:
    # when
    body = await unreachable.post(
        RUN_GENERATOR,
        {"tool": "TURBO", "key": "k-1", "prompt": None},
        token=unreachable.token("some-account"),
    )
    # then
    assert body["data"] is None
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "TRY_AGAIN"
    assert "same idempotency key" in error["message"]


async def test_a_read_with_no_database_answers_try_again(unreachable: Api) -> None:
    body = await unreachable.post(ME, token=unreachable.token("some-account"))
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "TRY_AGAIN"
    assert error["path"] == ["me"]


async def test_a_connection_broken_mid_transaction_answers_try_again_and_the_key_applies_once(
    api: Api, rows: Rows, postgres_url: str
) -> None:
    # given a run waiting on the account's row lock, inside its transaction
    account_id = await api.subscribed_account()
    holder = await asyncpg.connect(asyncpg_dsn(postgres_url))
    try:
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", account_id)
            variables = {"tool": "TURBO", "key": "broken-1", "prompt": None}
            waiting = asyncio.create_task(
                api.post(RUN_GENERATOR, variables, token=api.token(account_id))
            )
            # when its server connection is killed under it
            waiters: list[int] = []

            async def find_waiter() -> None:
                # Inside a transaction pg_stat_activity is read once and kept: clear it.
                await holder.execute("SELECT pg_stat_clear_snapshot()")
                waiters[:] = [
                    r["pid"]
                    for r in await holder.fetch(
                        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ]

            async with asyncio.timeout(10):
                while not waiters:
                    await find_waiter()
                    await asyncio.sleep(0.02)
            (pid,) = waiters
            await holder.execute("SELECT pg_terminate_backend($1)", pid)
        body = await asyncio.wait_for(waiting, 10)
    finally:
        await holder.close()
    # then it answers try again, and nothing was charged
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "TRY_AGAIN"
    assert await rows.count("generations") == 0
    # ... and the same key applies the run once
    retried = await api.run(account_id, "TURBO", key="broken-1")
    assert retried["__typename"] == "GeneratorRun"
    again = await api.run(account_id, "TURBO", key="broken-1")
    assert again["generation"]["id"] == retried["generation"]["id"]
    assert await rows.count("generations") == 1
    assert (await api.balances(account_id))["creditsTotal"] == 1000 - 20
