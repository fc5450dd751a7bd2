"""Plan changes: an upgrade at once with the difference granted, a downgrade at the next
renewal, a new billing interval on the same anchor."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from app.clock import FrozenClock
from tests.api_client import Api
from tests.db import Rows

CHANGE = """
mutation Change($id: ID!, $plan: Plan!, $interval: BillingInterval!) {
  changeSubscription(input: {accountId: $id, plan: $plan, interval: $interval}) {
    creditsTotal subscriptionBalance nextRenewalAt
    subscription { plan interval monthlyCredits startedAt scheduledPlan scheduledAt status }
  }
}
"""


async def change(api: Api, account_id: str, plan: str, interval: str = "MONTHLY") -> Any:
    variables = {"id": account_id, "plan": plan, "interval": interval}
    return (await api.as_service(CHANGE, variables))["changeSubscription"]


async def test_an_upgrade_grants_the_difference_at_once_and_keeps_the_anchor(
    api: Api, rows: Rows
) -> None:
    account_id = await api.subscribed_account("STARTER")
    await api.run(account_id, "ULTRA")  # 920 of 1000 left
    # when
    account = await change(api, account_id, "PRO")
    # then 3000 more credits this cycle, PRO from now on, same renewal date
    assert account["subscriptionBalance"] == 920 + 3000
    assert account["subscription"]["plan"] == "PRO"
    assert account["subscription"]["monthlyCredits"] == 4000
    assert account["subscription"]["startedAt"] == "2026-01-15T12:00:00+00:00"
    assert account["nextRenewalAt"] == "2026-02-15T12:00:00+00:00"
    grant = (await rows.ledger(account_id))[-1]
    assert (grant["kind"], grant["bucket"], grant["amount"], grant["reference_type"]) == (
        "GRANT",
        "SUBSCRIPTION",
        3000,
        "SUBSCRIPTION",
    )


async def test_a_downgrade_waits_for_the_next_renewal(
    api: Api, clock: FrozenClock, rows: Rows
) -> None:
    account_id = await api.subscribed_account("PRO")
    before = len(await rows.ledger(account_id))
    # when
    account = await change(api, account_id, "STARTER")
    # then nothing moves now; the plan shows what comes
    assert account["subscriptionBalance"] == 4000
    assert account["subscription"]["plan"] == "PRO"
    assert account["subscription"]["scheduledPlan"] == "STARTER"
    assert account["subscription"]["scheduledAt"] == "2026-02-15T12:00:00+00:00"
    assert len(await rows.ledger(account_id)) == before
    # when the renewal comes, it grants the new plan's allowance
    clock.advance(timedelta(days=31))
    me = await api.balances(account_id)
    assert me["subscriptionBalance"] == 1000
    assert me["subscription"]["plan"] == "STARTER"
    await api.run(account_id, "TURBO", key="after")  # a write records the renewal
    data = await api.as_service(
        "query A($id: ID!) { account(id: $id) { subscription {"
        " plan monthlyCredits scheduledPlan } } }",
        {"id": account_id},
    )
    assert data["account"]["subscription"] == {
        "plan": "STARTER",
        "monthlyCredits": 1000,
        "scheduledPlan": None,
    }
    renewal = [e for e in await rows.ledger(account_id) if e["reference_type"] == "RENEWAL"]
    assert [(e["kind"], e["amount"]) for e in renewal][-1] == ("GRANT", 1000)


async def test_an_interval_change_keeps_the_anchor_and_the_credits(api: Api) -> None:
    account_id = await api.subscribed_account("STARTER", "MONTHLY")
    account = await change(api, account_id, "STARTER", "ANNUAL")
    assert account["subscription"]["interval"] == "ANNUAL"
    assert account["subscriptionBalance"] == 1000
    assert account["nextRenewalAt"] == "2026-02-15T12:00:00+00:00"


async def test_changing_to_the_current_plan_changes_nothing(api: Api, rows: Rows) -> None:
    account_id = await api.subscribed_account("PRO")
    before = await rows.ledger(account_id)
    account = await change(api, account_id, "PRO")
    assert account["subscriptionBalance"] == 4000
    assert await rows.ledger(account_id) == before


async def test_upgrading_back_drops_a_scheduled_downgrade(api: Api) -> None:
    account_id = await api.subscribed_account("PRO")
    await change(api, account_id, "STARTER")
    account = await change(api, account_id, "PRO")
    assert account["subscription"]["scheduledPlan"] is None
    assert account["subscriptionBalance"] == 4000


async def test_a_cancelled_subscription_cannot_change_plan(api: Api) -> None:
    account_id = await api.subscribed_account("STARTER")
    await api.as_service(
        "mutation C($id: ID!) { cancelSubscription(accountId: $id) { id } }", {"id": account_id}
    )
    body = await api.post(
        CHANGE, {"id": account_id, "plan": "PRO", "interval": "MONTHLY"}, token=api.token()
    )
    assert body["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert (await api.balances(account_id))["subscriptionBalance"] == 1000


async def test_a_user_token_may_not_change_plans(api: Api) -> None:
    account_id = await api.subscribed_account("STARTER")
    body = await api.post(
        CHANGE,
        {"id": account_id, "plan": "PRO", "interval": "MONTHLY"},
        token=api.token(account_id),
    )
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
