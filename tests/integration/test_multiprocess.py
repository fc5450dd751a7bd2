"""Two real server processes on one PostgreSQL database: row locks, not process memory, keep
every balance and every job right."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from app.services.generations import TIMED_OUT
from tests.api_client import Worker
from tests.conftest import JWT_SECRET
from tests.db import Rows
from tests.processes import GatewayProcess, Gateways, audit, connected

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow, pytest.mark.pgbouncer]

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


def assert_audit_passes(gateways: Gateways) -> str:
    assert gateways.errors() == {}
    result = audit(gateways.database_url, JWT_SECRET, gateways.workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


async def test_spends_racing_through_two_processes_succeed_exactly_as_far_as_credits_go(
    gateways: Gateways, postgres_rows: Rows
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
    verdict = assert_audit_passes(gateways)
    print(
        f"\n{requests} runs over 2 processes in {elapsed:.2f}s: {successes} succeeded "
        f"({per_process[0]} via one, {per_process[1]} via the other), "
        f"{kinds['InsufficientCredits']} refused; {verdict}"
    )


async def test_purchase_retries_through_two_processes_grant_once(
    gateways: Gateways, postgres_rows: Rows
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
    assert_audit_passes(gateways)


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
    gateways: Gateways, postgres_rows: Rows
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
    verdict = assert_audit_passes(gateways)
    print(
        f"\n{jobs} jobs settled by 2 workers in {elapsed:.2f}s: {dict(by_worker)}, "
        f"{len(succeeded)} succeeded, {len(failed)} failed and refunded; {verdict}"
    )


async def test_complete_and_fail_of_one_job_racing_through_two_processes_settle_it_once(
    gateways: Gateways, postgres_rows: Rows
) -> None:
    # given 30 running jobs
    first, second = await two_gateways(gateways)
    async with connected(first, JWT_SECRET) as a, connected(second, JWT_SECRET) as b:
        account_id = await a.subscribed_account("PRO")
        jobs = 30
        for i in range(jobs):
            await a.run(account_id, "TURBO", key=f"job-{i}")
        claimed = await Worker(b).claim(limit=jobs)
        assert len(claimed) == jobs
        # when for every job one process completes it while the other fails it
        answers = await asyncio.gather(
            *(
                settle
                for job in claimed
                for settle in (Worker(a).complete(job["id"]), Worker(b).fail(job["id"]))
            )
        )
        balances = await a.balances(account_id)
    # then exactly one of the two wins each job; the loser is told it already finished
    outcomes = Counter(answer["__typename"] for answer in answers)
    assert outcomes["InvalidGenerationTransition"] == jobs
    assert outcomes["GenerationCompleted"] + outcomes["GenerationFailed"] == jobs
    failed = {
        answer["generation"]["id"]
        for answer in answers
        if answer["__typename"] == "GenerationFailed"
    }
    refunds = await postgres_rows.all(
        "SELECT reference_id, COUNT(*) AS entries FROM ledger_entries WHERE kind = 'REFUND'"
        " GROUP BY reference_id"
    )
    assert {r["reference_id"]: r["entries"] for r in refunds} == dict.fromkeys(failed, 1)
    assert balances["creditsTotal"] == PRO_MONTHLY - TURBO * (jobs - len(failed))
    assert_audit_passes(gateways)
    print(f"\n{jobs} jobs completed and failed at once: {dict(outcomes)}")


TIMEOUT_SECONDS = 1
SWEEPING = {
    "CREDITGATE_GENERATION_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
    "CREDITGATE_SWEEP_INTERVAL_SECONDS": "0.05",
}


async def finished(rows: Rows, jobs: int) -> None:
    # Polling: the sweeps happen in other processes, so there is no event to wait for.
    while await rows.count("generations WHERE status IN ('SUCCEEDED', 'FAILED')") < jobs:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def test_timeout_sweeps_of_two_processes_and_workers_race_and_each_job_ends_once(
    gateways: Gateways, postgres_rows: Rows
) -> None:
    # given two processes sweeping every 50 ms, jobs timing out after 1 s, 40 jobs of which
    # 20 are claimed
    first, second = await asyncio.gather(gateways.start(env=SWEEPING), gateways.start(env=SWEEPING))
    async with connected(first, JWT_SECRET) as a, connected(second, JWT_SECRET) as b:
        account_id = await a.subscribed_account("PRO")
        jobs = 40
        await asyncio.gather(
            *((a, b)[i % 2].run(account_id, "TURBO", key=f"job-{i}") for i in range(jobs))
        )
        claimed = await Worker(a).claim(limit=jobs // 2)
        claimed_at = time.monotonic()
        # when, just as the claimed jobs time out, both workers settle them while both
        # processes sweep (real time must pass: the servers run on the system clock)
        await asyncio.sleep(max(0.0, claimed_at + TIMEOUT_SECONDS - time.monotonic()))
        answers = await asyncio.gather(
            *(
                Worker(a).complete(job["id"]) if n % 2 else Worker(b).fail(job["id"])
                for n, job in enumerate(claimed)
            )
        )
        async with asyncio.timeout(30):
            await finished(postgres_rows, jobs)
        balances = await a.balances(account_id)
    # then every job ended once: by its worker, or by a sweep (timed out), never by both
    rows = await postgres_rows.all("SELECT id, status, failure_reason FROM generations")
    ended = {r["id"]: (r["status"], r["failure_reason"]) for r in rows}
    lost = [a for a in answers if a["__typename"] == "InvalidGenerationTransition"]
    won = {a["generation"]["id"]: a["__typename"] for a in answers if a not in lost}
    assert len(won) + len(lost) == len(claimed)
    for job_id, outcome in won.items():
        expected = "SUCCEEDED" if outcome == "GenerationCompleted" else "FAILED"
        assert ended[job_id][0] == expected
        assert ended[job_id][1] != TIMED_OUT
    timed_out = {job_id for job_id, (_, reason) in ended.items() if reason == TIMED_OUT}
    assert len(timed_out) == jobs - len(won)
    failed = {job_id for job_id, (status, _) in ended.items() if status == "FAILED"}
    refunds = await postgres_rows.all(
        "SELECT reference_id, COUNT(*) AS entries FROM ledger_entries WHERE kind = 'REFUND'"
        " GROUP BY reference_id"
    )
    assert {r["reference_id"]: r["entries"] for r in refunds} == dict.fromkeys(failed, 1)
    assert balances["creditsTotal"] == PRO_MONTHLY - TURBO * (jobs - len(failed))
    verdict = assert_audit_passes(gateways)
    print(
        f"\n{jobs} jobs, {len(claimed)} claimed; workers settled {len(won)}, "
        f"{len(lost)} found them timed out; {len(timed_out)} timed out in all; {verdict}"
    )
