"""Two server processes on one PostgreSQL whose clocks disagree across a renewal: the one
that lags still acts in the cycle the other recorded, because a write's instant is never
earlier than the account's records."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from dateutil.relativedelta import relativedelta

from tests.api_client import Worker
from tests.conftest import JWT_SECRET
from tests.db import Rows
from tests.processes import Gateways, audit, connected

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]

LAG = timedelta(days=7)
ALLOWANCE = {"CREDITGATE_STARTER_MONTHLY_CREDITS": "20"}
CANCEL = """
mutation($id: ID!) {
  cancelSubscription(accountId: $id) { nextRenewalAt subscription { canceledAt endsAt } }
}
"""


async def test_a_process_whose_clock_lags_a_renewal_another_recorded_revives_nothing(
    gateways: Gateways, postgres_rows: Rows
) -> None:
    # given a process whose clock is a week behind, and one on time, and a plan whose first
    # renewal falls between their two clocks
    lagging, on_time = await asyncio.gather(
        gateways.start(
            env={**ALLOWANCE, "CREDITGATE_CLOCK_OFFSET_SECONDS": str(-LAG.days * 86400)}
        ),
        gateways.start(env=ALLOWANCE),
    )
    started_at = datetime.now(UTC) - relativedelta(months=1, days=1)
    renews_at = started_at + relativedelta(months=1)
    assert datetime.now(UTC) - LAG < renews_at < datetime.now(UTC)
    async with connected(lagging, JWT_SECRET) as a, connected(on_time, JWT_SECRET) as b:
        account_id = await a.create_account()
        await a.subscribe(account_id, started_at=started_at)
        # a run held from the first cycle: 20 subscription and 60 pack credits
        assert (await a.buy(account_id))["__typename"] == "PackPurchased"
        run = await a.run(account_id, "ULTRA", key="held")
        assert run["account"]["packBalance"] == 440
        await Worker(a).claim(limit=1)
        # when the on-time process records the renewal, then the lagging one fails the run
        renewed = await b.run(account_id, "TURBO", key="records-the-renewal")
        assert renewed["account"] == {"creditsTotal": 0, "subscriptionBalance": 0, "packBalance": 0}
        failed = await Worker(a).fail(run["generation"]["id"])
        # and then cancels the plan
        canceled = (await a.as_service(CANCEL, {"id": account_id}))["cancelSubscription"]
        balances = await b.balances(account_id)
    # then the held credits expired with their cycle, on the record and in every read
    assert failed["account"] == {"creditsTotal": 0, "subscriptionBalance": 0, "packBalance": 0}
    assert datetime.fromisoformat(failed["generation"]["finishedAt"]) == renews_at
    assert (balances["creditsTotal"], balances["packBalance"]) == (0, 0)
    lots = await postgres_rows.all("SELECT remaining FROM pack_purchases")
    assert lots == [{"remaining": 0}]
    moves = [(e["kind"], e["bucket"], e["amount"]) for e in await postgres_rows.ledger(account_id)]
    assert moves[-4:] == [
        ("REFUND", "SUBSCRIPTION", 20),
        ("EXPIRY", "SUBSCRIPTION", -20),
        ("REFUND", "PACK", 60),
        ("EXPIRY", "PACK", -60),
    ]
    # and the cancel cancelled the cycle the account is in, not the one that had ended
    assert datetime.fromisoformat(canceled["subscription"]["canceledAt"]) == renews_at
    ends = started_at + relativedelta(months=2)
    assert datetime.fromisoformat(canceled["subscription"]["endsAt"]) == ends
    assert gateways.errors() == {}
    result = audit(gateways.database_url, JWT_SECRET, gateways.workdir)
    assert result.returncode == 0, result.stdout + result.stderr
