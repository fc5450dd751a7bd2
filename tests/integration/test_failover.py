"""The primary dies under load: no acknowledged write is lost, none is applied twice.

A pg_auto_failover formation on loopback (tests/failover.py: a monitor, a primary and two
secondaries, ``number_sync_standbys`` 1) serves two ``creditgate serve`` processes through a
multi-host URL with ``target_session_attrs=read-write``. Clients run generators and buy
packs with idempotency keys; the primary's PostgreSQL and its keeper are SIGKILLed mid-load;
the monitor promotes a secondary; every request without a success is sent again with its
key until it succeeds. An answer is a success, TRY_AGAIN, or no answer (a broken
connection): anything else is a wrong answer and fails the test.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.clock import FrozenClock
from app.events.postgres import asyncpg_connect_kwargs
from tests.api_client import PURCHASE_PACK, RUN_GENERATOR, Api
from tests.conftest import JWT_SECRET
from tests.failover import Formation, running_formation
from tests.processes import GatewayProcess, Gateways, audit

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]

ACCOUNTS = 6
CLIENTS = 6
REQUESTS = 240
PURCHASE_EVERY = 3  # one request in three buys a pack, the others run Turbo
KILL_AT_FIRED = REQUESTS // 3
PACE_SECONDS = 0.02  # between one client's requests, so the load spans the outage
PRO_MONTHLY = 4000
PACK = 500
TURBO = 20
TEST_TIMEOUT_SECONDS = 420
RETRY_SECONDS = 120
SUCCESS = {"run": ("runGenerator", "GeneratorRun"), "buy": ("purchasePack", "PackPurchased")}


@dataclass
class Request:
    number: int
    account: int
    kind: str  # "run" or "buy"
    key: str
    attempts: int = 0
    try_again: int = 0  # answered TRY_AGAIN
    no_answer: int = 0  # the connection broke or was refused before an answer
    sent_at: list[float] = field(default_factory=list)
    result_id: str | None = None  # set by the first success
    acknowledged_at: float | None = None
    wrong: list[Any] = field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        return self.result_id is not None


class Load:
    def __init__(self, gateways: list[GatewayProcess], accounts: list[str]) -> None:
        self.gateways = gateways
        self.accounts = accounts
        self.requests = [
            Request(
                n,
                n % ACCOUNTS,
                "buy" if n % PURCHASE_EVERY == 0 else "run",
                f"failover-{n}",
            )
            for n in range(REQUESTS)
        ]
        self.fired = 0
        self.kill_now = asyncio.Event()
        self.clock = FrozenClock(datetime.now(UTC))

    async def send(self, client: httpx.AsyncClient, request: Request, gateway: int) -> None:
        """One attempt: a success is recorded, TRY_AGAIN or no answer leaves it unanswered."""
        api = Api(client, JWT_SECRET, self.clock)
        account_id = self.accounts[request.account]
        if request.kind == "run":
            document: str = RUN_GENERATOR
            variables: dict[str, Any] = {"tool": "TURBO", "key": request.key, "prompt": None}
        else:
            document, variables = PURCHASE_PACK, {"packId": "pack-500", "key": request.key}
        request.attempts += 1
        request.sent_at.append(time.monotonic())
        url = f"{self.gateways[gateway].url}"
        try:
            response = await client.post(
                url,
                json={"query": document, "variables": variables},
                headers={"Authorization": f"Bearer {api.token(account_id)}"},
            )
        except httpx.TransportError:
            request.no_answer += 1
            return  # no answer: the outcome is unknown, the key will tell
        body = response.json() if response.status_code == 200 else None
        errors = (body or {}).get("errors")
        if body is None or (
            errors and {e.get("extensions", {}).get("code") for e in errors} != {"TRY_AGAIN"}
        ):
            request.wrong.append((response.status_code, body or response.text))
            return
        if errors:
            request.try_again += 1
            return
        fieldname, typename = SUCCESS[request.kind]
        answer = body["data"][fieldname]
        if answer["__typename"] != typename:
            request.wrong.append(answer)
            return
        found = answer["generation" if request.kind == "run" else "purchase"]["id"]
        if request.result_id is None:
            request.result_id = found
            request.acknowledged_at = time.monotonic()
        elif request.result_id != found:
            request.wrong.append(("another id for the same key", request.result_id, found))

    async def client(self, client: httpx.AsyncClient, number: int) -> None:
        for request in self.requests[number::CLIENTS]:
            self.fired += 1
            if self.fired >= KILL_AT_FIRED:
                self.kill_now.set()
            await self.send(client, request, request.number % 2)
            await asyncio.sleep(PACE_SECONDS)

    async def retry(self, client: httpx.AsyncClient, requests: list[Request]) -> None:
        for request in requests:
            await self.send(client, request, (request.number + request.attempts) % 2)

    def unanswered(self) -> list[Request]:
        """Requests with no success yet (a wrong answer is not sent again: it fails the test)."""
        return [r for r in self.requests if not r.acknowledged and not r.wrong]


async def watch_readiness(
    gateways: list[GatewayProcess],
    seen: list[tuple[float, int, int]],
    reasons: Counter[str],
    stop: asyncio.Event,
) -> None:
    async with httpx.AsyncClient(timeout=2.0) as client:
        while not stop.is_set():
            for index, gateway in enumerate(gateways):
                try:
                    response = await client.get(f"{gateway.base_url}/readyz")
                except httpx.TransportError:
                    seen.append((time.monotonic(), index, 0))
                    continue
                seen.append((time.monotonic(), index, response.status_code))
                if response.status_code == 503:
                    reasons.update(response.json()["problems"])
            await asyncio.sleep(0.1)


async def all_ready(client: httpx.AsyncClient, servers: list[GatewayProcess]) -> bool:
    statuses = [(await client.get(f"{s.base_url}/readyz")).status_code for s in servers]
    return statuses == [200] * len(servers)


async def ledger_on_primary(formation: Formation) -> dict[str, Any]:
    connection = await asyncpg.connect(**asyncpg_connect_kwargs(formation.database_url()))
    try:
        generations = await connection.fetch("SELECT id, account_id FROM generations")
        purchases = await connection.fetch("SELECT id, account_id FROM pack_purchases")
        keys = await connection.fetch("SELECT key FROM idempotency_keys")
        entries = await connection.fetch(
            "SELECT kind, reference_id, SUM(amount) AS amount FROM ledger_entries"
            " WHERE kind IN ('SPEND', 'GRANT') AND reference_type IN ('GENERATION', 'PURCHASE')"
            " GROUP BY kind, reference_id"
        )
        balances = await connection.fetch(
            "SELECT id, subscription_balance + pack_balance AS total FROM accounts"
        )
        in_recovery = await connection.fetchval("SELECT pg_is_in_recovery()")
        port = await connection.fetchval("SELECT current_setting('port')::int")
    finally:
        await connection.close()
    return {
        "generations": [r["id"] for r in generations],
        "purchases": [r["id"] for r in purchases],
        "keys": [r["key"] for r in keys],
        "entries": {(r["kind"], r["reference_id"]): int(r["amount"]) for r in entries},
        "totals": {r["id"]: int(r["total"]) for r in balances},
        "in_recovery": in_recovery,
        "port": port,
    }


async def test_a_primary_killed_under_load_loses_no_acknowledged_write_and_applies_none_twice(
    tmp_path: Path,
) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_SECONDS), running_formation() as formation:
        await _fail_over_under_load(formation, tmp_path)


async def _fail_over_under_load(formation: Formation, tmp_path: Path) -> None:
    # given two gateways on the formation (the first one migrates it) and six Pro accounts
    url = formation.database_url()
    env = {"CREDITGATE_DB_POOL_SIZE": "4"}
    with Gateways(url, JWT_SECRET, tmp_path) as gateways:
        first = await gateways.start(env=env)
        second = await gateways.start(env=env)
        servers = [first, second]
        timeout = httpx.Timeout(30.0)
        async with httpx.AsyncClient(base_url=first.base_url, timeout=timeout) as client:
            setup = Api(client, JWT_SECRET, FrozenClock(datetime.now(UTC)))
            accounts = [await setup.subscribed_account("PRO") for _ in range(ACCOUNTS)]
        load = Load(servers, accounts)
        old_primary = await formation.primary()
        readiness: list[tuple[float, int, int]] = []
        reasons: Counter[str] = Counter()
        stop_watching = asyncio.Event()

        # when the primary is killed once a third of the load is fired
        async def kill_and_wait() -> tuple[float, float, str]:
            await load.kill_now.wait()
            killed_at = time.monotonic()
            await asyncio.to_thread(formation.kill, old_primary)
            promoted, promoted_at = await formation.until_promoted(other_than=old_primary)
            return killed_at, promoted_at, promoted.name

        async with httpx.AsyncClient(timeout=timeout) as client:
            watcher = asyncio.create_task(
                watch_readiness(servers, readiness, reasons, stop_watching)
            )
            killer = asyncio.create_task(kill_and_wait())
            started = time.monotonic()
            await asyncio.gather(*(load.client(client, c) for c in range(CLIENTS)))
            load_seconds = time.monotonic() - started
            killed_at, promoted_at, promoted = await killer
            unanswered_after_load = load.unanswered()
            acknowledged_in_load = REQUESTS - len(unanswered_after_load)

            # then every request without a success is sent again with its key until it has one
            retried = {r.number for r in unanswered_after_load}
            async with asyncio.timeout(RETRY_SECONDS):
                while pending := load.unanswered():
                    # As the clients would: each its own requests again, in turn, through
                    # either gateway.
                    await asyncio.gather(
                        *(load.retry(client, pending[c::CLIENTS]) for c in range(CLIENTS))
                    )
                    if load.unanswered():
                        await asyncio.sleep(0.2)
                # ... and both gateways are ready again
                while not await all_ready(client, servers):  # noqa: ASYNC110 (other processes)
                    await asyncio.sleep(0.1)
            checked_at = time.monotonic()
            stop_watching.set()
            await watcher
        verdict = audit(url, JWT_SECRET, tmp_path)

    wrong = {r.key: r.wrong for r in load.requests if r.wrong}
    assert wrong == {}, f"wrong answers: {wrong}"
    assert old_primary.name != promoted
    ledger = await ledger_on_primary(formation)
    assert ledger["in_recovery"] is False
    assert ledger["port"] != old_primary.port

    # every acknowledged request is in the ledger, once
    runs = [r for r in load.requests if r.kind == "run"]
    buys = [r for r in load.requests if r.kind == "buy"]
    run_ids = {r.result_id for r in runs}
    buy_ids = {r.result_id for r in buys}
    lost = [r.key for r in runs if r.result_id not in set(ledger["generations"])] + [
        r.key for r in buys if r.result_id not in set(ledger["purchases"])
    ]
    assert lost == []
    applied_twice = (
        (len(ledger["generations"]) - len(set(run_ids)))
        + (len(ledger["purchases"]) - len(set(buy_ids)))
        + sum(n - 1 for n in Counter(ledger["keys"]).values())
    )
    assert applied_twice == 0
    assert len(run_ids) == len(runs) and len(buy_ids) == len(buys)
    assert sorted(ledger["keys"]) == sorted(r.key for r in load.requests)
    assert ledger["entries"] == {
        **{("SPEND", run): -TURBO for run in run_ids},
        **{("GRANT", buy): PACK for buy in buy_ids},
    }
    for index, account_id in enumerate(accounts):
        mine = Counter(r.kind for r in load.requests if r.account == index)
        assert (
            ledger["totals"][account_id] == PRO_MONTHLY + PACK * mine["buy"] - TURBO * mine["run"]
        )
    # creditgate audit passes on the new primary
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr

    # /readyz said 503 during the outage, and 200 after, on both gateways
    for index in range(len(servers)):
        during = [s for at, i, s in readiness if i == index and killed_at < at < checked_at]
        assert 503 in during, f"gateway {index} never said not ready: {Counter(during)}"

    # the time from the kill to the first write acknowledged after it
    first_write = min(
        r.acknowledged_at
        for r in load.requests
        if r.acknowledged_at is not None and r.sent_at[-1] > killed_at
    )
    recovered = first_write - killed_at
    unready = [at for at, _, status in readiness if status != 200 and at > killed_at]
    # Ready again: the first 200 of each gateway after its last 503, the later of the two.
    ready_again_at = max(
        min(at for at, i, status in readiness if i == index and at > last and status == 200)
        for index in range(len(servers))
        for last in [max(at for at, i, status in readiness if i == index and status != 200)]
    )
    print(
        f"\nfailover: {REQUESTS} requests fired ({CLIENTS} clients, {ACCOUNTS} accounts, "
        f"2 gateways) in {load_seconds:.1f}s; primary {old_primary.name} SIGKILLed after "
        f"{KILL_AT_FIRED} fired; {acknowledged_in_load} acknowledged during the load, "
        f"{len(retried)} retried with their keys "
        f"({sum(r.attempts - 1 for r in load.requests)} retries in all; answers TRY_AGAIN "
        f"{sum(r.try_again for r in load.requests)}, no answer "
        f"{sum(r.no_answer for r in load.requests)}), lost {len(lost)}, "
        f"applied twice {applied_twice}; {promoted} promoted "
        f"{promoted_at - killed_at:.1f}s after the kill, first acknowledged write "
        f"{recovered:.1f}s after it, both /readyz 200 again after "
        f"{ready_again_at - killed_at:.1f}s (503 seen {len(unready)} times: {dict(reasons)}); "
        f"{verdict.stdout.strip()}"
    )
