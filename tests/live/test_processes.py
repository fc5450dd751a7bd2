"""`creditgate serve` processes: live updates across processes, logs, graceful shutdown.

On PostgreSQL the subscriber and the writer are two processes on one database; on SQLite
(in-process events) one process does both.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

import asyncpg
import httpx
import pytest
import websockets
from sqlalchemy.engine import make_url
from websockets.asyncio.client import connect

from app.auth import issue_token
from app.events.postgres import asyncpg_dsn
from tests.api_client import CREATE_ACCOUNT, RUN_GENERATOR, START_SUBSCRIPTION
from tests.conftest import JWT_SECRET
from tests.processes import APP_DEFAULTS, GatewayProcess, Gateways
from tests.servers import NEXT_TIMEOUT, until, ws_session

pytestmark = [pytest.mark.slow, pytest.mark.pgbouncer]

CREDITS_CHANGED = "subscription { creditsChanged { id creditsTotal } }"
ME = "query Me { me { id creditsTotal } }"
RUNS = 5
MAX_DELAY_SECONDS = 1.0


def _token(account_id: str | None = None) -> str:
    return issue_token(
        JWT_SECRET,
        role="user" if account_id else "service",
        account_id=account_id,
        now=datetime.now(UTC),
        ttl=timedelta(minutes=10),
    )


@pytest.fixture
def env() -> dict[str, str | None]:
    """Settings on top of the database URL and JWT secret the processes are given."""
    return {
        "CREDITGATE_ENV": "production",
        "CREDITGATE_DB_POOL_SIZE": "4",
        "CREDITGATE_SHUTDOWN_GRACE_SECONDS": "20",
        # As in production: the sweeper runs and rate limits apply.
        **APP_DEFAULTS,
        # ... but no worker claims the runs here, so a plan's cap on runs at once would
        # refuse the third; the cap has its own tests.
        "CREDITGATE_STARTER_MAX_ACTIVE_GENERATIONS": "0",
        "CREDITGATE_PRO_MAX_ACTIVE_GENERATIONS": "0",
    }


@pytest.fixture
def live_gateways(
    database_url: str, events_database_url: str | None, tmp_path: Path
) -> Iterator[Gateways]:
    """Processes on ``database_url`` (SQLite, PostgreSQL or PgBouncer), stopped at the end."""
    with Gateways(
        database_url, JWT_SECRET, tmp_path, events_database_url=events_database_url
    ) as gateways:
        yield gateways


@pytest.fixture
async def server(live_gateways: Gateways, env: dict[str, str | None]) -> GatewayProcess:
    return await live_gateways.start(env=env)


class Gateway:
    def __init__(self, client: httpx.AsyncClient, address: str) -> None:
        self.client = client
        self.address = address

    async def post(self, query: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
        response = await self.client.post(
            f"http://{self.address}/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        return body["data"]

    async def subscribed_account(self) -> str:
        email = f"live-{uuid.uuid4().hex[:12]}@example.com"
        created = await self.post(CREATE_ACCOUNT, {"email": email}, _token())
        account_id = str(created["createAccount"]["id"])
        variables = {"id": account_id, "plan": "STARTER", "interval": "MONTHLY", "at": None}
        await self.post(START_SUBSCRIPTION, variables, _token())
        return account_id

    async def run(self, account_id: str, key: str) -> dict[str, Any]:
        variables = {"tool": "TURBO", "key": key, "prompt": None}
        data = await self.post(RUN_GENERATOR, variables, _token(account_id))
        return data["runGenerator"]


@asynccontextmanager
async def gateway(address: str) -> AsyncIterator[Gateway]:
    async with httpx.AsyncClient(timeout=NEXT_TIMEOUT * 4) as client:
        yield Gateway(client, address)


async def test_a_subscriber_sees_a_change_made_through_another_process_within_a_second(
    live_gateways: Gateways,
    env: dict[str, str | None],
    database_url: str,
    record_property: Any,
) -> None:
    # given: a subscriber on one process, and (on PostgreSQL) a writer on another
    processes = 1 if database_url.startswith("sqlite") else 2
    servers = [await live_gateways.start(env=env) for _ in range(processes)]
    subscriber, writer = servers[0], servers[-1]
    async with gateway(writer.address) as http:
        account_id = await http.subscribed_account()
        async with ws_session(subscriber.address, _token(account_id)) as session:
            stream = session.subscribe(CREDITS_CHANGED)
            assert (await stream.next())["creditsChanged"]["creditsTotal"] == 1000
            upper, lower = [], []
            for i in range(RUNS):
                # when: a run commits through the writer
                pushed = asyncio.create_task(_timed(stream.next()))
                sent = time.perf_counter()
                run = await http.run(account_id, key=f"run-{i}")
                answered = time.perf_counter()
                message, received = await pushed

                # then: the subscriber hears of it, well within a second
                assert run["__typename"] == "GeneratorRun"
                total = message["creditsChanged"]["creditsTotal"]
                assert total == run["account"]["creditsTotal"] == 1000 - 20 * (i + 1)
                # The commit happened between sending the request and its answer.
                upper.append(received - sent)
                lower.append(received - answered)
                assert received - sent < MAX_DELAY_SECONDS
    record_property("processes", processes)
    record_property("delay_upper_ms", [round(d * 1000, 2) for d in upper])
    record_property("delay_lower_ms", [round(d * 1000, 2) for d in lower])
    record_property("delay_upper_median_ms", round(median(upper) * 1000, 2))


async def _timed(next_message: Any) -> tuple[dict[str, Any], float]:
    message = await next_message
    return message, time.perf_counter()


async def test_log_lines_are_json_with_request_fields_and_carry_no_secret(
    server: GatewayProcess, database_url: str
) -> None:
    # given
    async with gateway(server.address) as http:
        account_id = await http.subscribed_account()
        token = _token(account_id)

        # when: requests that put a token where it could leak
        response = await http.client.post(
            f"http://{server.address}/graphql",
            json={"query": ME},
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "req-123"},
        )
        assert response.headers["x-request-id"] == "req-123"
        await http.client.post(
            f"http://{server.address}/graphql",
            json={"query": ME, "variables": {"token": token}},
            headers={"Authorization": f"Bearer {token}x"},
        )
        await http.client.get(f"http://{server.address}/graphql?query={ME}&token={token}")
        await http.client.post(
            f"http://{server.address}/graphql",
            content=f"{{broken json {token}",
            headers={"Content-Type": "application/json"},
        )
        # A document that fails validation is logged with its source: the token is in it.
        await http.client.post(
            f"http://{server.address}/graphql",
            json={"query": f'{{ me(token: "{token}") {{ id }} }}'},
            headers={"Authorization": f"Bearer {token}"},
        )
        async with ws_session(server.address, token) as session:
            await session.subscribe(CREDITS_CHANGED).next()
    server.terminate()
    server.wait()

    # then
    log = server.log()
    assert token not in log and token[:40] not in log
    assert JWT_SECRET not in log
    password = make_url(database_url).password
    assert not password or password not in log
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    (me,) = [line for line in lines if line.get("request_id") == "req-123"]
    assert me["operation"] == "Me" and me["result"] == "ok"
    assert me["account_id"] == account_id
    assert me["status"] == 200 and isinstance(me["duration_ms"], float)
    assert any(line.get("path") == "/graphql" and line["method"] == "WEBSOCKET" for line in lines)


async def test_sigterm_finishes_requests_in_flight_closes_subscriptions_and_exits(
    server: GatewayProcess, database_url: str
) -> None:
    # given: a subscriber, and a run waiting on a write lock held by this test
    async with gateway(server.address) as http:
        account_id = await http.subscribed_account()
        ws = await connect(
            f"ws://{server.address}/graphql",
            subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        )
        auth = {"authorization": f"Bearer {_token(account_id)}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": auth}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        subscribe = {"query": CREDITS_CHANGED}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
        assert json.loads(await ws.recv())["type"] == "next"
        async with _write_lock(database_url, account_id):
            in_flight = asyncio.create_task(http.run(account_id, key="during-shutdown"))
            await until(lambda: _in_flight(server) >= 1, NEXT_TIMEOUT * 2)

            # when
            server.terminate()

            # then: the subscription is closed with 1012 (service restart) and new
            # connections are refused, while the run still waits for the lock
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), NEXT_TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
            await until(lambda: _refused(server), NEXT_TIMEOUT)
            assert not in_flight.done()
        # the lock is released: the run finishes, answered in full
        run = await asyncio.wait_for(in_flight, NEXT_TIMEOUT * 2)
    assert run["__typename"] == "GeneratorRun"
    assert run["account"]["creditsTotal"] == 980
    assert server.wait(NEXT_TIMEOUT * 4) in (0, -signal.SIGTERM)
    assert "stopped: event listener closed, connection pool disposed" in server.log()
    # nothing half-written: the balance is the sum of the ledger
    assert await _balance_and_ledger_sum(database_url, account_id) == (980, 980)


def _in_flight(server: GatewayProcess) -> float:
    text = httpx.get(f"http://{server.address}/metrics", timeout=2).text
    for line in text.splitlines():
        if line.startswith("creditgate_http_requests_in_flight "):
            return float(line.split()[1])
    return 0.0


def _refused(server: GatewayProcess) -> bool:
    try:
        httpx.get(f"http://{server.address}/healthz", timeout=1)
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:
        return False
    return False


@asynccontextmanager
async def _write_lock(database_url: str, account_id: str) -> AsyncIterator[None]:
    """Hold what a writer of this account must wait for, until the block exits."""
    if database_url.startswith("sqlite"):
        path = make_url(database_url).database
        assert path
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            connection.execute("ROLLBACK")
            connection.close()
        return
    pg = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async with pg.transaction():
            await pg.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", account_id)
            yield
    finally:
        await pg.close()


async def _balance_and_ledger_sum(database_url: str, account_id: str) -> tuple[int, int]:
    balance = "SELECT subscription_balance + pack_balance FROM accounts WHERE id = ?"
    ledger = "SELECT COALESCE(SUM(amount), 0) FROM ledger_entries WHERE account_id = ?"
    if database_url.startswith("sqlite"):
        path = make_url(database_url).database
        assert path
        with sqlite3.connect(path) as connection:
            (b,) = connection.execute(balance, (account_id,)).fetchone()
            (s,) = connection.execute(ledger, (account_id,)).fetchone()
            return int(b), int(s)
    pg = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        b = await pg.fetchval(balance.replace("?", "$1"), account_id)
        s = await pg.fetchval(ledger.replace("?", "$1"), account_id)
        return int(b), int(s)
    finally:
        await pg.close()


async def test_workers_on_one_port_share_live_events_through_postgres(
    live_gateways: Gateways, env: dict[str, str | None], database_url: str, tmp_path: Path
) -> None:
    if database_url.startswith("sqlite"):
        refused = GatewayProcess(
            database_url, JWT_SECRET, tmp_path, env=env, args=("--workers", "2"), name="refused"
        )
        try:
            refused.start()
            assert refused.wait(NEXT_TIMEOUT * 4) == 2
            assert "SQLite is served by one process" in refused.log()
        finally:
            refused.stop()
        return
    server = await live_gateways.start(env=env, args=("--workers", "3"))

    def started_workers() -> set[str]:
        return {
            line.split("[")[1].split("]")[0]
            for line in server.log().splitlines()
            if "Started server process" in line
        }

    # /readyz answered by one worker says nothing of the others: wait until all three run.
    await until(lambda: len(started_workers()) == 3, seconds=NEXT_TIMEOUT * 6)
    async with gateway(server.address) as http:
        account_id = await http.subscribed_account()
    async with ws_session(server.address, _token(account_id)) as session:
        stream = session.subscribe(CREDITS_CHANGED)
        assert (await stream.next())["creditsChanged"]["creditsTotal"] == 1000
        for i in range(6):
            # A new connection each time, so the runs land on any of the workers.
            async with gateway(server.address) as http:
                await http.run(account_id, key=f"w-{i}")
            message = await stream.next()
            assert message["creditsChanged"]["creditsTotal"] == 1000 - 20 * (i + 1)
    assert len(started_workers()) == 3
