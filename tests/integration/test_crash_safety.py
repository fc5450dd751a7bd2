"""A server killed in the middle of a load loses no answered write and applies none twice.

Clients spend and buy with unique idempotency keys; the server is SIGKILLed once enough
successes have been answered, restarted on the same port, and every request whose answer
never came is sent again with its key (with a sample of the answered ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.api_client import Api
from tests.conftest import JWT_SECRET
from tests.db import Rows
from tests.processes import GatewayProcess, Gateways, audit, connected

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow, pytest.mark.pgbouncer]

# Several accounts, so several writes commit at once and some answer is likely to be on its
# way when the kill lands; each account still has several clients racing for its row lock.
ACCOUNTS = 4
CLIENTS = 16
REQUESTS_PER_CLIENT = 20
PURCHASE_EVERY = 8  # one request in eight buys a pack, the others run Ultra
KILL_AFTER_SUCCESSES = 80
STARTER_MONTHLY = 1000
PACK = 500
ULTRA = 80
LOAD_TIMEOUT_SECONDS = 60
AIM_SECONDS = 5.0  # how long to wait for that moment before killing anyway
CATCH_UP_SECONDS = 0.2  # for answers already sent to reach their clients
SUCCESS = {"run": "GeneratorRun", "buy": "PackPurchased"}


@dataclass
class Request:
    account: int
    key: str
    kind: str  # "run" or "buy"
    outcome: str = "unsent"  # then "answered", or "lost" when the connection broke first
    answer: dict[str, Any] | None = None

    @property
    def succeeded(self) -> bool:
        return self.answer is not None and self.answer["__typename"] == SUCCESS[self.kind]

    @property
    def result_id(self) -> str:
        assert self.answer is not None and self.succeeded
        found = self.answer["generation" if self.kind == "run" else "purchase"]["id"]
        return str(found)


def answered_again(request: Request, answer: dict[str, Any]) -> Request:
    return Request(request.account, request.key, request.kind, "answered", answer)


async def send(api: Api, accounts: list[str], request: Request) -> dict[str, Any]:
    account_id = accounts[request.account]
    if request.kind == "run":
        answer: dict[str, Any] = await api.run(account_id, "ULTRA", key=request.key)
    else:
        answer = await api.buy(account_id, key=request.key)
    return answer


class Load:
    """Clients sending their requests in turn; ``enough`` is set at the kill threshold."""

    def __init__(self) -> None:
        self.requests = [
            Request(
                account=(n // REQUESTS_PER_CLIENT) % ACCOUNTS,
                key=f"c{n // REQUESTS_PER_CLIENT}-{n}",
                kind="run" if n % PURCHASE_EVERY else "buy",
            )
            for n in range(CLIENTS * REQUESTS_PER_CLIENT)
        ]
        self.answered_successes = 0
        self.enough = asyncio.Event()
        self.answer_arrived = asyncio.Condition()

    def of_client(self, client: int) -> list[Request]:
        return self.requests[client * REQUESTS_PER_CLIENT : (client + 1) * REQUESTS_PER_CLIENT]

    async def client(self, api: Api, accounts: list[str], client: int) -> None:
        for request in self.of_client(client):
            try:
                request.answer = await send(api, accounts, request)
            except httpx.TransportError:
                request.outcome = "lost"  # a real client would back off and retry later
                return
            request.outcome = "answered"
            if request.succeeded:
                self.answered_successes += 1
                if self.answered_successes >= KILL_AFTER_SUCCESSES:
                    self.enough.set()
                async with self.answer_arrived:
                    self.answer_arrived.notify_all()

    def having(self, outcome: str) -> list[Request]:
        return [r for r in self.requests if r.outcome == outcome]


async def committed_writes(conn: AsyncConnection) -> int:
    return int(await conn.scalar(sa.text("SELECT count(*) FROM idempotency_keys")) or 0)


async def answers_catch_up(load: Load, committed: int) -> None:
    async with load.answer_arrived:
        await load.answer_arrived.wait_for(lambda: load.answered_successes >= committed)


async def paused_with_a_commit_unanswered(
    load: Load, gateway: GatewayProcess, conn: AsyncConnection
) -> bool:
    """Pause the server when the database holds more writes than clients have answers for;
    if the answers already sent do not make up the difference, one will never come."""
    if await committed_writes(conn) <= load.answered_successes:
        return False
    gateway.pause()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CATCH_UP_SECONDS):
            await answers_catch_up(load, await committed_writes(conn))
    if load.answered_successes < await committed_writes(conn):
        return True
    gateway.resume()
    return False


async def kill_mid_write(load: Load, gateway: GatewayProcess, rows: Rows) -> bool:
    """SIGKILL once enough successes were answered, at a moment when a committed write has
    not been answered (the case a retry must replay rather than redo) if one comes soon.

    Returns whether the kill found such a moment."""
    await load.enough.wait()
    aimed = False
    async with rows.engine.connect() as conn:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(AIM_SECONDS):
                while not aimed:
                    aimed = await paused_with_a_commit_unanswered(load, gateway, conn)
    gateway.kill()
    return aimed


async def test_a_killed_server_loses_no_answered_write_and_applies_none_twice(
    gateways: Gateways, postgres_rows: Rows, postgres_url: str, tmp_path: Path
) -> None:
    # given a server and four accounts with 1000 credits each
    gateway = await gateways.start()
    load = Load()
    async with connected(gateway, JWT_SECRET) as api:
        accounts = [await api.subscribed_account("STARTER") for _ in range(ACCOUNTS)]
        # when the server is SIGKILLed in the middle of a load from 16 concurrent clients
        started = time.monotonic()
        async with asyncio.timeout(LOAD_TIMEOUT_SECONDS):
            killer = asyncio.create_task(kill_mid_write(load, gateway, postgres_rows))
            await asyncio.gather(*(load.client(api, accounts, c) for c in range(CLIENTS)))
            if not killer.done():
                killer.cancel()
                pytest.fail("the load finished before the kill threshold")
            aimed = await killer
        load_seconds = time.monotonic() - started
    answered, lost, unsent = load.having("answered"), load.having("lost"), load.having("unsent")
    answered_ok = [r for r in answered if r.succeeded]
    assert answered_ok and lost, "the kill should fall in the middle of the load"
    # and restarted on the same port
    started = time.monotonic()
    gateway.start()
    await gateway.wait_ready()
    restart_seconds = time.monotonic() - started
    remembered = {
        r["key"]: r["result_id"]
        for r in await postgres_rows.all("SELECT key, result_id FROM idempotency_keys")
    }
    committed_unanswered = [r for r in lost if r.key in remembered]
    if aimed:
        assert committed_unanswered, "the kill was aimed at a committed, unanswered write"
    # then every request without an answer, and every third answered success, is sent again
    sample = answered_ok[::3]
    retried = lost + unsent + sample
    async with connected(gateway, JWT_SECRET) as api:
        async with asyncio.timeout(LOAD_TIMEOUT_SECONDS):
            retries = await asyncio.gather(*(send(api, accounts, r) for r in retried))
        totals = [(await api.balances(a))["creditsTotal"] for a in accounts]
    again = dict(zip((r.key for r in retried), retries, strict=True))

    # an answered success is replayed with the same id, nothing new
    for request in sample:
        retry = answered_again(request, again[request.key])
        assert retry.succeeded, retry.answer
        assert retry.result_id == request.result_id
    # a write committed before the crash whose answer was lost is replayed, not redone
    for request in committed_unanswered:
        retry = answered_again(request, again[request.key])
        assert retry.succeeded, retry.answer
        assert retry.result_id == remembered[request.key]
    for request in lost + unsent:
        request.answer, request.outcome = again[request.key], "answered"

    # every success is in the ledger once: one row per success, its SPEND or GRANT entries
    succeeded = [r for r in load.requests if r.succeeded]
    runs = {r.result_id for r in succeeded if r.kind == "run"}
    purchases = {r.result_id for r in succeeded if r.kind == "buy"}
    assert len(runs) + len(purchases) == len(succeeded)  # distinct keys, distinct ids
    generation_rows = await postgres_rows.all("SELECT id FROM generations")
    purchase_rows = await postgres_rows.all("SELECT id FROM pack_purchases")
    assert {r["id"] for r in generation_rows} == runs
    assert {r["id"] for r in purchase_rows} == purchases
    assert await postgres_rows.count("idempotency_keys") == len(succeeded)
    entries = await postgres_rows.all(
        "SELECT kind, reference_id, SUM(amount) AS amount FROM ledger_entries"
        " WHERE kind IN ('SPEND', 'GRANT') AND reference_type IN ('GENERATION', 'PURCHASE')"
        " GROUP BY kind, reference_id"
    )
    assert {(e["kind"], e["reference_id"]): e["amount"] for e in entries} == {
        **{("SPEND", run): -ULTRA for run in runs},
        **{("GRANT", purchase): PACK for purchase in purchases},
    }
    for account, total in enumerate(totals):
        mine = Counter(r.kind for r in succeeded if r.account == account)
        assert total == STARTER_MONTHLY + PACK * mine["buy"] - ULTRA * mine["run"]
    assert gateways.errors() == {}
    result = audit(postgres_url, JWT_SECRET, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    outcomes = Counter(r.answer["__typename"] for r in load.requests if r.answer)
    print(
        f"\ncrash safety: {len(load.requests)} requests planned, {CLIENTS} clients, "
        f"{ACCOUNTS} accounts; "
        f"{len(answered) + len(lost)} fired before the kill, {len(answered)} answered "
        f"({len(answered_ok)} succeeded, {len(answered) - len(answered_ok)} refused), "
        f"{len(lost)} lost in flight ({len(committed_unanswered)} of them committed; "
        f"kill aimed: {aimed}), "
        f"{len(unsent)} not yet sent; load {load_seconds:.2f}s, restart {restart_seconds:.2f}s\n"
        f"retried {len(retried)} ({len(lost)} lost + {len(unsent)} unsent + "
        f"{len(sample)} answered successes); final: {len(runs)} generations, "
        f"{len(purchases)} purchases, {outcomes.get('InsufficientCredits', 0)} refused, "
        f"creditsTotal {totals}; {result.stdout.strip()}"
    )
