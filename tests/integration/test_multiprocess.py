"""Two real server processes on one PostgreSQL database: row locks, not process memory, keep
every balance and every job right."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.api_client import Worker
from tests.conftest import JWT_SECRET
from tests.db import Rows
from tests.processes import GatewayProcess, Gateways, audit, connected

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]

ULTRA = 80
TURBO = 20
PRO_MONTHLY = 4000
PACK = 500


async def two_gateways(gateways: Gateways) -> tuple[GatewayProcess, GatewayProcess]:
    # The default pool (16 per process) is kept: every request here queues on one account's
    # row lock, and pools of 5, 16, 20 and 40 measured the same within noise (4-7 s for 240
    # runs); a bigger pool only moves the queue from the pool into PostgreSQL.
    first, second = await asyncio.gather(gateways.start(), gateways.start())
    return first, second


def assert_audit_passes(database_url: str, workdir: Path) -> str:
    result = audit(database_url, JWT_SECRET, workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


async def test_spends_racing_through_two_processes_succeed_exactly_as_far_as_credits_go(
    gateways: Gateways, postgres_rows: Rows, postgres_url: str, tmp_path: Path
) -> None:
    # given two processes and an account with 4000 subscription + 500 pack credits
    first, second = await two_gateways(gateways)
    async with connected(first, JWT_SECRET) as a, connected(second, JWT_SECRET) as b:
        account_id = await a.subscribed_account("PRO")
        await b.buy(account_id)
        balance = PRO_MONTHLY + PACK
        # when 240 Ultra runs race, each with its own key, alternating between the processes
        requests = 240
        started = time.monotonic()
        results = await asyncio.gather(
            *((a, b)[i % 2].run(account_id, "ULTRA", key=f"race-{i}") for i in range(requests))
        )
        elapsed = time.monotonic() - started
        balances = await a.balances(account_id)
    # then exactly floor(balance / cost) succeed and the rest are refused
    successes = balance // ULTRA
    kinds = Counter(r["__typename"] for r in results)
    assert kinds == {"GeneratorRun": successes, "InsufficientCredits": requests - successes}
    refused = [r for r in results if r["__typename"] == "InsufficientCredits"]
    assert all(r["required"] == ULTRA and r["available"] < ULTRA for r in refused)
    assert balances["creditsTotal"] == balance - ULTRA * successes
    ids = {r["generation"]["id"] for r in results if r["__typename"] == "GeneratorRun"}
    assert len(ids) == successes
    assert await postgres_rows.count("generations") == successes
    assert await postgres_rows.ledger_sums(account_id) == {
        "SUBSCRIPTION": balances["subscriptionBalance"],
        "PACK": balances["packBalance"],
    }
    per_process = Counter(i % 2 for i, r in enumerate(results) if r["__typename"] == "GeneratorRun")
    verdict = assert_audit_passes(postgres_url, tmp_path)
    print(
        f"\n{requests} runs over 2 processes in {elapsed:.2f}s: {successes} succeeded "
        f"({per_process[0]} via one, {per_process[1]} via the other), "
        f"{kinds['InsufficientCredits']} refused; {verdict}"
    )


async def test_purchase_retries_through_two_processes_grant_once(
    gateways: Gateways, postgres_rows: Rows, postgres_url: str, tmp_path: Path
) -> None:
    # given
    first, second = await two_gateways(gateways)
    async with connected(first, JWT_SECRET) as a, connected(second, JWT_SECRET) as b:
        account_id = await a.subscribed_account("STARTER")
        # when one tap is retried 60 times at once through both processes
        results = await asyncio.gather(
            *((a, b)[i % 2].buy(account_id, key="same-tap") for i in range(60))
        )
        balances = await b.balances(account_id)
    # then one grant, and every answer names it
    assert {r["__typename"] for r in results} == {"PackPurchased"}
    assert len({r["purchase"]["id"] for r in results}) == 1
    assert await postgres_rows.count("pack_purchases") == 1
    assert await postgres_rows.count("idempotency_keys") == 1
    grants = [e for e in await postgres_rows.ledger(account_id) if e["bucket"] == "PACK"]
    assert [(e["kind"], e["amount"]) for e in grants] == [("GRANT", PACK)]
    assert balances["packBalance"] == PACK
    assert_audit_passes(postgres_url, tmp_path)


async def settle_until_empty(worker: Worker, name: str, log: list[tuple[str, str, str]]) -> None:
    """Claim five at a time; complete and fail in turn; stop when a claim comes back empty."""
    settled = 0
    while claimed := await worker.claim(limit=5):
        for job in claimed:
            settled += 1
            if settled % 2:
                answer = await worker.fail(job["id"], reason=f"{name} gave up")
                assert answer["__typename"] == "GenerationFailed", answer
            else:
                answer = await worker.complete(job["id"], url=f"https://cdn.example/{name}.glb")
                assert answer["__typename"] == "GenerationCompleted", answer
            log.append((name, job["id"], answer["generation"]["status"]))


async def test_two_workers_in_two_processes_claim_and_settle_each_job_once(
    gateways: Gateways, postgres_rows: Rows, postgres_url: str, tmp_path: Path
) -> None:
    # given 60 queued Turbo jobs on one account, queued through both processes
    first, second = await two_gateways(gateways)
    async with connected(first, JWT_SECRET) as a, connected(second, JWT_SECRET) as b:
        account_id = await a.subscribed_account("PRO")
        jobs = 60
        queued = await asyncio.gather(
            *((a, b)[i % 2].run(account_id, "TURBO", key=f"job-{i}") for i in range(jobs))
        )
        job_ids = {r["generation"]["id"] for r in queued}
        assert len(job_ids) == jobs
        # when one worker per process claims and settles until nothing is left
        log: list[tuple[str, str, str]] = []
        started = time.monotonic()
        await asyncio.gather(
            settle_until_empty(Worker(a), "worker-a", log),
            settle_until_empty(Worker(b), "worker-b", log),
        )
        elapsed = time.monotonic() - started
        balances = await a.balances(account_id)
    # then each job was claimed by exactly one worker and settled exactly once
    settled_ids = [job_id for _, job_id, _ in log]
    assert sorted(settled_ids) == sorted(job_ids)
    by_worker = Counter(name for name, _, _ in log)
    failed = {job_id for _, job_id, status in log if status == "FAILED"}
    succeeded = {job_id for _, job_id, status in log if status == "SUCCEEDED"}
    assert len(failed) + len(succeeded) == jobs
    statuses = await postgres_rows.all("SELECT id, status FROM generations")
    assert {r["id"]: r["status"] for r in statuses} == {
        **dict.fromkeys(failed, "FAILED"),
        **dict.fromkeys(succeeded, "SUCCEEDED"),
    }
    # and exactly the failed ones were refunded, each by its cost
    refunds = await postgres_rows.all(
        "SELECT reference_id, SUM(amount) AS refunded, COUNT(*) AS entries FROM ledger_entries"
        " WHERE kind = 'REFUND' GROUP BY reference_id"
    )
    assert {r["reference_id"]: (r["refunded"], r["entries"]) for r in refunds} == dict.fromkeys(
        failed, (TURBO, 1)
    )
    assert balances["creditsTotal"] == PRO_MONTHLY - TURBO * len(succeeded)
    verdict = assert_audit_passes(postgres_url, tmp_path)
    print(
        f"\n{jobs} jobs settled by 2 workers in {elapsed:.2f}s: {dict(by_worker)}, "
        f"{len(succeeded)} succeeded, {len(failed)} failed and refunded; {verdict}"
    )
