"""Daily operations through two server processes on one PostgreSQL: a cancel racing a claim,
the per-plan cap under a burst of runs, and one adjustment sent to both processes at once."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.api.test_adjustments import ADJUST, support_token
from tests.api.test_daily_operations import CANCEL, RUN
from tests.api_client import Worker
from tests.conftest import JWT_SECRET
from tests.db import Rows
from tests.processes import Gateways, audit, connected

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]

CAPS = {
    "CREDITGATE_STARTER_MAX_ACTIVE_GENERATIONS": "2",
    "CREDITGATE_PRO_MAX_ACTIVE_GENERATIONS": "5",
}


async def test_a_cancel_racing_a_claim_through_two_processes_lets_exactly_one_win(
    gateways: Gateways, postgres_rows: Rows
) -> None:
    first, second = await asyncio.gather(gateways.start(), gateways.start())
    wins: Counter[str] = Counter()
    async with connected(first, JWT_SECRET) as a, connected(second, JWT_SECRET) as b:
        account_id = await a.subscribed_account("PRO")
        for n in range(20):
            # one queued job; its owner cancels it through one process while a worker claims
            # through the other (the sides swap every round)
            owner, worker = (a, b) if n % 2 else (b, a)
            job = (await owner.run(account_id, "TURBO", key=f"job-{n}"))["generation"]["id"]
            cancelled, claimed = await asyncio.gather(
                owner.data(CANCEL, {"id": job}, token=owner.token(account_id)),
                Worker(worker).claim(limit=1),
            )
            outcome = cancelled["cancelGeneration"]["__typename"]
            # then exactly one of them has it
            if outcome == "GenerationCanceled":
                assert claimed == []
                wins["cancel"] += 1
            else:
                assert outcome == "InvalidGenerationTransition"
                assert cancelled["cancelGeneration"]["generation"]["status"] == "RUNNING"
                assert [c["id"] for c in claimed] == [job]
                wins["claim"] += 1
        balances = await a.balances(account_id)
    rows = await postgres_rows.all("SELECT status, COUNT(*) AS n FROM generations GROUP BY status")
    assert {r["status"]: r["n"] for r in rows} == {
        status: n for status, n in (("CANCELED", wins["cancel"]), ("RUNNING", wins["claim"])) if n
    }
    assert balances["creditsTotal"] == 4000 - 20 * wins["claim"]
    result = audit(gateways.database_url, JWT_SECRET, gateways.workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"\ncancel/claim race: {dict(wins)} over 20 rounds")


async def test_fifty_concurrent_runs_on_a_pro_account_leave_exactly_its_cap_active(
    gateways: Gateways, postgres_rows: Rows
) -> None:
    first, second = await asyncio.gather(gateways.start(env=CAPS), gateways.start(env=CAPS))
    async with connected(first, JWT_SECRET) as a, connected(second, JWT_SECRET) as b:
        account_id = await a.subscribed_account("PRO")
        results = await asyncio.gather(
            *(
                (a, b)[n % 2].data(
                    RUN, {"tool": "TURBO", "key": f"burst-{n}"}, token=a.token(account_id)
                )
                for n in range(50)
            )
        )
        balances = await a.balances(account_id)
    kinds = Counter(r["runGenerator"]["__typename"] for r in results)
    assert kinds == {"GeneratorRun": 5, "TooManyActiveGenerations": 45}
    assert await postgres_rows.count("generations") == 5
    assert balances["creditsTotal"] == 4000 - 5 * 20
    assert all(
        (r["runGenerator"]["limit"], r["runGenerator"]["active"]) == (5, 5)
        for r in results
        if r["runGenerator"]["__typename"] == "TooManyActiveGenerations"
    )


async def test_one_adjustment_sent_to_two_processes_at_once_is_granted_once(
    gateways: Gateways, postgres_rows: Rows
) -> None:
    first, second = await asyncio.gather(gateways.start(), gateways.start())
    rounds, copies = 10, 6
    async with connected(first, JWT_SECRET) as a, connected(second, JWT_SECRET) as b:
        account_id = await a.subscribed_account("STARTER")
        token = support_token(a)
        answers = []
        for n in range(rounds):
            # the same adjustment under one key, sent through both processes at the same time
            variables = {
                "id": account_id,
                "amount": 10 + n,
                "reason": f"Ticket {n}: outage",
                "key": f"ticket-{n}",
                "at": None,
            }
            results = await asyncio.gather(
                *((a, b)[c % 2].data(ADJUST, variables, token=token) for c in range(copies))
            )
            answers.append([r["adjustCredits"] for r in results])
        balances = (await a.as_user(account_id, "query { me { bonusBalance creditsTotal } }"))["me"]
    # then each round granted once, and every copy answered with that one adjustment
    for n, round_answers in enumerate(answers):
        assert {r["__typename"] for r in round_answers} == {"CreditsAdjusted"}
        ids = {r["adjustment"]["id"] for r in round_answers}
        assert len(ids) == 1, (n, ids)
        assert {r["adjustment"]["amount"] for r in round_answers} == {10 + n}
    granted = sum(10 + n for n in range(rounds))
    assert balances == {"bonusBalance": granted, "creditsTotal": 1000 + granted}
    assert await postgres_rows.count("credit_adjustments") == rounds
    entries = await postgres_rows.all(
        "SELECT COUNT(*) AS n, SUM(amount) AS total FROM ledger_entries WHERE kind = 'ADJUSTMENT'"
    )
    assert (entries[0]["n"], entries[0]["total"]) == (rounds, granted)
    result = audit(gateways.database_url, JWT_SECRET, gateways.workdir)
    assert result.returncode == 0, result.stdout + result.stderr
