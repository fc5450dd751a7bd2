"""Credit adjustments by support through the GraphQL endpoint, on both databases: bonus lots
(their spend order, expiry and refunds), corrections in spend order, idempotency, refusals."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from app.auth import issue_token
from app.clock import FrozenClock
from app.services.audit import run_audit
from app.services.maintenance import sweep
from tests.api_client import CLAIM, Api
from tests.conftest import JWT_SECRET
from tests.db import Rows

ADJUST = """
mutation Adjust($id: ID!, $amount: Int!, $reason: String!, $key: String!, $at: DateTime) {
  adjustCredits(input: {accountId: $id, amount: $amount, reason: $reason,
                        idempotencyKey: $key, expiresAt: $at}) {
    __typename
    ... on CreditsAdjusted {
      adjustment { id accountId amount reason actor createdAt expiresAt remaining }
      account { creditsTotal subscriptionBalance bonusBalance bonusExpiresAt packBalance }
    }
    ... on InsufficientCredits { required available message }
    ... on IdempotencyConflict { idempotencyKey }
  }
}
"""
ME = """
query { me { creditsTotal subscriptionBalance bonusBalance bonusExpiresAt packBalance
  nextRenewalAt } }
"""
LEDGER = """
query { me { ledger(first: 20) { edges { node {
  kind bucket amount balanceAfter referenceType referenceId reason actor occurredAt
} } } } }
"""
FAIL = """
mutation Fail($id: ID!) {
  failGeneration(id: $id, reason: "GPU lost") {
    __typename ... on GenerationFailed { account { bonusBalance creditsTotal } }
  }
}
"""
SUPPORT = "support:ada"


def support_token(api: Api, subject: str = SUPPORT) -> str:
    return issue_token(
        JWT_SECRET,
        role="service",
        account_id=None,
        now=api.clock.now(),
        ttl=timedelta(hours=1),
        subject=subject,
    )


async def adjust_body(
    api: Api,
    account_id: str,
    amount: int,
    *,
    key: str = "adj-1",
    reason: str = "Outage on Dec 1",
    expires_at: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    variables = {
        "id": account_id,
        "amount": amount,
        "reason": reason,
        "key": key,
        "at": expires_at,
    }
    return await api.post(ADJUST, variables, token=token or support_token(api))


async def adjust(api: Api, account_id: str, amount: int, **kw: Any) -> Any:
    body = await adjust_body(api, account_id, amount, **kw)
    assert "errors" not in body, body["errors"]
    return body["data"]["adjustCredits"]


async def adjustment_rows(rows: Rows, account_id: str) -> list[dict[str, Any]]:
    return await rows.all(
        "SELECT kind, bucket, amount, balance_after, reference_type, reference_id, lot_id,"
        " reason, actor FROM ledger_entries WHERE account_id = :a ORDER BY id",
        a=account_id,
    )


async def test_a_positive_adjustment_grants_a_bonus_with_its_reason_and_the_support_subject(
    api: Api, rows: Rows
) -> None:
    # given a STARTER account (1000 credits)
    account_id = await api.subscribed_account("STARTER")
    # when support grants 250
    result = await adjust(api, account_id, 250, expires_at="2026-03-01T00:00:00+00:00")
    # then one ADJUSTMENT entry in the BONUS bucket, shown in the total
    assert result["__typename"] == "CreditsAdjusted"
    adjustment = result["adjustment"]
    assert {k: adjustment[k] for k in ("accountId", "amount", "reason", "actor", "remaining")} == {
        "accountId": account_id,
        "amount": 250,
        "reason": "Outage on Dec 1",
        "actor": SUPPORT,
        "remaining": 250,
    }
    assert adjustment["expiresAt"] == "2026-03-01T00:00:00+00:00"
    assert result["account"] == {
        "creditsTotal": 1250,
        "subscriptionBalance": 1000,
        "bonusBalance": 250,
        "bonusExpiresAt": "2026-03-01T00:00:00+00:00",
        "packBalance": 0,
    }
    entry = (await adjustment_rows(rows, account_id))[-1]
    assert entry == {
        "kind": "ADJUSTMENT",
        "bucket": "BONUS",
        "amount": 250,
        "balance_after": 250,
        "reference_type": "ADJUSTMENT",
        "reference_id": adjustment["id"],
        "lot_id": adjustment["id"],
        "reason": "Outage on Dec 1",
        "actor": SUPPORT,
    }
    assert (await rows.account(account_id))["bonus_balance"] == 250
    me = (await api.as_user(account_id, ME))["me"]
    assert (me["creditsTotal"], me["bonusBalance"]) == (1250, 250)
    ledger = (await api.as_user(account_id, LEDGER))["me"]["ledger"]["edges"]
    assert {k: ledger[0]["node"][k] for k in ("kind", "bucket", "reason", "actor")} == {
        "kind": "ADJUSTMENT",
        "bucket": "BONUS",
        "reason": "Outage on Dec 1",
        "actor": SUPPORT,
    }


async def test_a_bonus_without_a_date_expires_at_the_next_renewal(
    api: Api, clock: FrozenClock, rows: Rows
) -> None:
    account_id = await api.subscribed_account("STARTER")
    result = await adjust(api, account_id, 300)
    assert result["adjustment"]["expiresAt"] == "2026-02-15T12:00:00+00:00"
    assert result["account"]["bonusExpiresAt"] == "2026-02-15T12:00:00+00:00"
    # when the renewal comes
    clock.advance(timedelta(days=31))
    # then a read no longer counts it, and the next write records its expiry at the renewal
    me = (await api.as_user(account_id, ME))["me"]
    assert (me["bonusBalance"], me["bonusExpiresAt"], me["creditsTotal"]) == (0, None, 1000)
    await api.run(account_id, "TURBO")
    expiry = [e for e in await adjustment_rows(rows, account_id) if e["kind"] == "EXPIRY"]
    assert [(e["bucket"], e["amount"]) for e in expiry] == [
        ("BONUS", -300),
        ("SUBSCRIPTION", -1000),
    ]
    assert (await run_audit(api_services(api))).findings == []


async def test_a_bonus_expires_at_its_date_and_the_sweep_records_it(
    api: Api, clock: FrozenClock, rows: Rows
) -> None:
    account_id = await api.subscribed_account("STARTER")
    await adjust(api, account_id, 120, expires_at="2026-01-20T00:00:00Z")
    clock.set(clock.now() + timedelta(days=4, hours=11, minutes=59))  # a minute before
    assert (await api.as_user(account_id, ME))["me"]["bonusBalance"] == 120
    clock.advance(timedelta(minutes=1))
    assert (await api.as_user(account_id, ME))["me"]["bonusBalance"] == 0
    # when the sweep runs with no request
    report = await sweep(api_services(api))
    # then it recorded the expiry, dated at the bonus's date
    assert report.renewed_accounts == 1
    (expiry,) = await rows.all(
        "SELECT bucket, amount, occurred_at FROM ledger_entries"
        " WHERE account_id = :a AND kind = 'EXPIRY'",
        a=account_id,
    )
    assert (expiry["bucket"], expiry["amount"]) == ("BONUS", -120)
    assert (await rows.account(account_id))["bonus_balance"] == 0
    assert (await sweep(api_services(api))).renewed_accounts == 0
    assert (await run_audit(api_services(api))).findings == []


async def test_bonus_credits_are_spent_after_subscription_credits_and_before_packs(
    api: Api, rows: Rows
) -> None:
    account_id = await api.subscribed_account("STARTER")
    await api.buy(account_id, "pack-500")
    await adjust(api, account_id, 100)
    # when runs take the 1000 subscription credits and 60 more
    for n in range(13):
        await api.run(account_id, "ULTRA", key=f"run-{n}")  # 13 x 80 = 1040
    # then the 40 beyond came from the bonus; the pack is untouched
    me = (await api.as_user(account_id, ME))["me"]
    assert (me["subscriptionBalance"], me["bonusBalance"], me["packBalance"]) == (0, 60, 500)
    spends = [
        (e["bucket"], e["amount"])
        for e in await adjustment_rows(rows, account_id)
        if e["kind"] == "SPEND"
    ]
    assert spends[-2:] == [("SUBSCRIPTION", -40), ("BONUS", -40)]
    # and a run beyond the bonus spills into the pack
    await api.run(account_id, "ULTRA", key="run-spill")
    me = (await api.as_user(account_id, ME))["me"]
    assert (me["bonusBalance"], me["packBalance"]) == (0, 480)


async def test_held_bonus_credits_go_back_to_the_bonus_or_expire_if_it_ended(
    api: Api, clock: FrozenClock
) -> None:
    # given a run paid from a bonus
    account_id = await api.create_account()
    await adjust(api, account_id, 100, expires_at="2026-01-16T12:00:00Z")
    kept = (await api.run(account_id, "ULTRA", key="kept"))["generation"]["id"]
    lost = (await api.run(account_id, "BACKGROUND_REMOVAL", key="lost"))["generation"]["id"]
    assert (await api.as_user(account_id, ME))["me"]["bonusBalance"] == 19
    # when the first fails while the bonus lives, its credits go back to it
    failed = (await api.as_service(FAIL, {"id": kept}))["failGeneration"]
    assert failed["account"] == {"bonusBalance": 99, "creditsTotal": 99}
    # when the other fails after the bonus ended, its credit comes back and expires
    clock.advance(timedelta(days=2))
    failed = (await api.as_service(FAIL, {"id": lost}))["failGeneration"]
    assert failed["account"] == {"bonusBalance": 0, "creditsTotal": 0}
    ledger = (await api.as_user(account_id, LEDGER))["me"]["ledger"]["edges"]
    assert [(e["node"]["kind"], e["node"]["amount"]) for e in ledger[:3]] == [
        ("EXPIRY", -1),
        ("REFUND", 1),
        ("EXPIRY", -99),
    ]
    assert (await run_audit(api_services(api))).findings == []


async def test_a_negative_adjustment_takes_credits_back_in_spend_order(
    api: Api, rows: Rows
) -> None:
    account_id = await api.subscribed_account("STARTER")
    await api.buy(account_id, "pack-500")
    await adjust(api, account_id, 200, key="bonus")
    # when support takes back 1300
    result = await adjust(api, account_id, -1300, key="correction", reason="Double grant")
    # then the subscription, then the bonus, then the pack
    assert result["__typename"] == "CreditsAdjusted"
    assert result["adjustment"]["expiresAt"] is None
    assert result["account"] == {
        "creditsTotal": 400,
        "subscriptionBalance": 0,
        "bonusBalance": 0,
        "bonusExpiresAt": None,
        "packBalance": 400,
    }
    entries = [e for e in await adjustment_rows(rows, account_id) if e["amount"] < 0]
    assert [(e["kind"], e["bucket"], e["amount"], e["balance_after"]) for e in entries] == [
        ("ADJUSTMENT", "SUBSCRIPTION", -1000, 0),
        ("ADJUSTMENT", "BONUS", -200, 0),
        ("ADJUSTMENT", "PACK", -100, 400),
    ]
    assert {e["reference_id"] for e in entries} == {result["adjustment"]["id"]}
    assert {(e["reason"], e["actor"]) for e in entries} == {("Double grant", SUPPORT)}
    assert (await run_audit(api_services(api))).findings == []


async def test_a_correction_beyond_the_balance_is_refused_and_writes_nothing(
    api: Api, rows: Rows
) -> None:
    account_id = await api.subscribed_account("STARTER")
    before = await adjustment_rows(rows, account_id)
    result = await adjust(api, account_id, -1001)
    assert result["__typename"] == "InsufficientCredits"
    assert (result["required"], result["available"]) == (1001, 1000)
    assert "correction" in result["message"]
    assert await adjustment_rows(rows, account_id) == before
    assert await rows.count("credit_adjustments") == 0
    # the key was not remembered: it may be used once the cause is gone
    assert (await adjust(api, account_id, -1000))["__typename"] == "CreditsAdjusted"


async def test_a_retried_adjustment_returns_the_first_and_grants_once(api: Api, rows: Rows) -> None:
    account_id = await api.subscribed_account("STARTER")
    first = await adjust(api, account_id, 75, key="ticket-42")
    again = await adjust(api, account_id, 75, key="ticket-42", token=support_token(api, "bob"))
    assert again["adjustment"] == first["adjustment"]
    assert again["account"]["bonusBalance"] == 75
    assert await rows.count("credit_adjustments") == 1
    assert (
        len([e for e in await adjustment_rows(rows, account_id) if e["kind"] == "ADJUSTMENT"]) == 1
    )
    # the same key for another adjustment, or for another mutation, is a conflict
    others: list[tuple[int, dict[str, str]]] = [
        (76, {}),
        (75, {"reason": "Other reason"}),
        (75, {"expires_at": "2026-02-01T00:00:00Z"}),
    ]
    for amount, other in others:
        conflict = await adjust(api, account_id, amount, key="ticket-42", **other)
        assert conflict == {"__typename": "IdempotencyConflict", "idempotencyKey": "ticket-42"}
    run = await api.run(account_id, "TURBO", key="ticket-42")
    assert run["__typename"] == "IdempotencyConflict"
    assert await rows.count("credit_adjustments") == 1


@pytest.mark.parametrize(
    ("amount", "reason", "expires_at", "field"),
    [
        (0, "ok", None, "amount"),
        (10, "", None, "reason"),
        (10, "   ", None, "reason"),
        (10, "x" * 501, None, "reason"),
        (10, "ok", "2026-01-01T00:00:00Z", "expiresAt"),  # in the past
        (10, "ok", "2026-01-15T12:00:00Z", "expiresAt"),  # now
        (-10, "ok", "2026-03-01T00:00:00Z", "expiresAt"),  # a correction has no expiry
        (10, "ok", "2026-03-01T00:00:00", "expiresAt"),  # no offset
    ],
)
async def test_bad_input_is_a_typed_error_and_changes_nothing(
    api: Api, rows: Rows, amount: int, reason: str, expires_at: str | None, field: str
) -> None:
    account_id = await api.subscribed_account("STARTER")
    before = await adjustment_rows(rows, account_id)
    body = await adjust_body(api, account_id, amount, reason=reason, expires_at=expires_at)
    assert body["data"] is None
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}, error
    assert await adjustment_rows(rows, account_id) == before
    assert await rows.count("credit_adjustments") == 0


async def test_a_reason_of_five_hundred_characters_is_kept_whole(api: Api, rows: Rows) -> None:
    account_id = await api.subscribed_account("STARTER")
    result = await adjust(api, account_id, 1, reason="r" * 500)
    assert result["adjustment"]["reason"] == "r" * 500
    assert (await adjustment_rows(rows, account_id))[-1]["reason"] == "r" * 500


@pytest.mark.parametrize("amount", [2**31, -(2**31) - 1])
async def test_an_amount_beyond_a_graphql_int_is_refused(api: Api, rows: Rows, amount: int) -> None:
    account_id = await api.subscribed_account("STARTER")
    body = await adjust_body(api, account_id, amount)
    assert body.get("data") is None
    (error,) = body["errors"]
    assert "Int cannot represent" in error["message"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert await rows.count("credit_adjustments") == 0


async def test_a_bonus_that_would_overflow_the_total_is_refused(api: Api, rows: Rows) -> None:
    account_id = await api.subscribed_account("STARTER")
    body = await adjust_body(api, account_id, 2**31 - 1000)
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "amount"}
    assert await rows.count("credit_adjustments") == 0


async def test_a_bonus_for_an_account_without_a_plan_needs_a_date(api: Api) -> None:
    account_id = await api.create_account()
    body = await adjust_body(api, account_id, 10)
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "expiresAt"}
    result = await adjust(api, account_id, 10, expires_at="2026-02-01T00:00:00Z")
    assert result["account"]["creditsTotal"] == 10


async def test_only_a_service_token_adjusts(api: Api, rows: Rows) -> None:
    account_id = await api.subscribed_account("STARTER")
    body = await adjust_body(api, account_id, 10, token=api.token(account_id))
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = await adjust_body(api, account_id, 10, token="not-a-token")
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert await rows.count("credit_adjustments") == 0


async def test_an_unknown_account_is_not_found(api: Api) -> None:
    body = await adjust_body(api, "00000000-0000-0000-0000-000000000000", 10)
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_a_plain_service_token_is_recorded_as_service(api: Api) -> None:
    account_id = await api.subscribed_account("STARTER")
    result = await adjust(api, account_id, 5, token=api.token())
    assert result["adjustment"]["actor"] == "service"


async def test_a_new_subscription_keeps_a_dated_bonus(api: Api, clock: FrozenClock) -> None:
    account_id = await api.subscribed_account("STARTER")
    await adjust(api, account_id, 40, expires_at="2026-06-01T00:00:00Z")
    await api.as_service(
        "mutation C($id: ID!) { cancelSubscription(accountId: $id) { id } }", {"id": account_id}
    )
    clock.advance(timedelta(days=40))
    account = await api.subscribe(account_id, "PRO")
    assert account["creditsTotal"] == 4000 + 40
    assert (await api.as_user(account_id, ME))["me"]["bonusBalance"] == 40


async def test_workers_and_metrics_see_adjustments(api: Api) -> None:
    account_id = await api.create_account()
    await adjust(api, account_id, 30, key="up", expires_at="2026-02-01T00:00:00Z")
    await adjust(api, account_id, -10, key="down")
    run = await api.run(account_id, "TURBO")
    claimed = (await api.as_service(CLAIM, {"limit": 5, "tools": None}))["claimGenerations"]
    assert [c["id"] for c in claimed] == [run["generation"]["id"]]
    text = (await api.client.get("/metrics")).text
    assert 'creditgate_credits_adjusted_total{bucket="BONUS",tool="none"} 30.0' in text
    assert 'creditgate_credits_corrected_total{bucket="BONUS",tool="none"} 10.0' in text
    assert 'creditgate_credits_spent_total{bucket="BONUS",tool="TURBO"} 20.0' in text


def api_services(api: Api) -> Any:
    transport = api.client._transport  # the ASGI app under test
    return transport.app.state.services  # type: ignore[attr-defined]
