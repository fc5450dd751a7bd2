"""Packs are paid for before they are credited: the purchase's life through the sandbox.

The sandbox in ``pending`` mode keeps each checkout open until ``sandboxSettlePayment``
says how it ends, as a real provider's webhooks would; every path goes through the same
fulfilment as Stripe's.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from app.clock import FrozenClock
from app.services.audit import run_audit
from tests.api_client import Api
from tests.conftest import ApiFactory
from tests.db import Rows

PURCHASE_FIELDS = """
  id packId credits priceCents currency status provider createdAt fulfilledAt expiresAt
  checkoutUrl statusReason refundedCents revokedCredits revocationTarget
"""
OUTCOME = f"""
  __typename
  ... on PackPurchased {{ purchase {{ {PURCHASE_FIELDS} }} account {{ creditsTotal packBalance }} }}
  ... on PaymentPending {{ purchase {{ {PURCHASE_FIELDS} }} checkoutUrl message }}
  ... on PurchaseClosed {{ purchase {{ {PURCHASE_FIELDS} }} message }}
  ... on Error {{ message }}
"""
NOT_FOUND = "... on PurchaseNotFound { purchaseId }"
BUY = f"""
mutation Buy($packId: ID!, $key: String!) {{
  purchasePack(input: {{packId: $packId, idempotencyKey: $key}}) {{ {OUTCOME} }}
}}
"""
CONFIRM = f"""
mutation Confirm($id: ID!) {{ confirmPackPurchase(purchaseId: $id) {{ {OUTCOME} {NOT_FOUND} }} }}
"""
SETTLE = f"""
mutation Settle($id: ID!, $outcome: SandboxPaymentOutcome!) {{
  sandboxSettlePayment(purchaseId: $id, outcome: $outcome) {{ {OUTCOME} {NOT_FOUND} }}
}}
"""
PURCHASE = f"query Purchase($id: ID!) {{ purchase(id: $id) {{ {PURCHASE_FIELDS} }} }}"
PURCHASES = """
query Purchases($first: Int, $after: String) {
  me { purchases(first: $first, after: $after) {
    edges { cursor node { id status } } pageInfo { hasNextPage endCursor } } }
}
"""


@pytest.fixture
async def pending(make_api: ApiFactory) -> Api:
    """A gateway whose sandbox checkouts stay open until a test settles them."""
    return await make_api(sandbox_payments="pending")


async def buy(api: Api, account_id: str, pack_id: str = "pack-500", key: str = "buy-1") -> Any:
    return (await api.as_user(account_id, BUY, {"packId": pack_id, "key": key}))["purchasePack"]


async def settle(api: Api, purchase_id: str, outcome: str) -> Any:
    data = await api.as_service(SETTLE, {"id": purchase_id, "outcome": outcome})
    return data["sandboxSettlePayment"]


async def confirm(api: Api, account_id: str, purchase_id: str) -> Any:
    return (await api.as_user(account_id, CONFIRM, {"id": purchase_id}))["confirmPackPurchase"]


async def audit_ok(api_app: Any) -> None:
    report = await run_audit(api_app)
    assert report.findings == []


async def grants_of(rows: Rows, account_id: str, purchase_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in await rows.ledger(account_id)
        if e["reference_id"] == purchase_id and e["kind"] == "GRANT"
    ]


async def test_the_sandbox_confirms_at_once_and_credits_the_pack(api: Api, rows: Rows) -> None:
    account_id = await api.subscribed_account()
    result = await buy(api, account_id)
    assert result["__typename"] == "PackPurchased"
    purchase = result["purchase"]
    assert (purchase["status"], purchase["provider"]) == ("FULFILLED", "SANDBOX")
    assert purchase["fulfilledAt"] == "2026-01-15T12:00:00+00:00"
    assert purchase["checkoutUrl"] is None
    assert result["account"] == {"creditsTotal": 1500, "packBalance": 500}
    assert len(await grants_of(rows, account_id, purchase["id"])) == 1


async def test_nothing_is_credited_while_the_payment_is_pending(pending: Api, rows: Rows) -> None:
    account_id = await pending.subscribed_account()
    # when
    result = await buy(pending, account_id)
    # then a PENDING purchase with the catalog's price, and no credits
    assert result["__typename"] == "PaymentPending"
    purchase = result["purchase"]
    assert purchase["status"] == "PENDING"
    assert (purchase["priceCents"], purchase["currency"], purchase["credits"]) == (1000, "USD", 500)
    assert purchase["expiresAt"] is None and purchase["fulfilledAt"] is None
    assert result["checkoutUrl"] == purchase["checkoutUrl"]
    assert purchase["id"] in result["checkoutUrl"]
    assert (await pending.balances(account_id))["packBalance"] == 0
    assert [e for e in await rows.ledger(account_id) if e["bucket"] == "PACK"] == []


async def test_a_retry_with_the_key_returns_the_same_purchase_and_checkout(pending: Api) -> None:
    account_id = await pending.subscribed_account()
    first = await buy(pending, account_id)
    again = await buy(pending, account_id)
    assert again["purchase"]["id"] == first["purchase"]["id"]
    assert again["checkoutUrl"] == first["checkoutUrl"]


async def test_a_confirmed_payment_grants_once_however_often_it_is_confirmed(
    pending: Api, rows: Rows
) -> None:
    account_id = await pending.subscribed_account()
    purchase_id = (await buy(pending, account_id))["purchase"]["id"]
    # before the payment, confirming changes nothing
    assert (await confirm(pending, account_id, purchase_id))["__typename"] == "PaymentPending"
    # when the payment is confirmed, and the client confirms many times at once
    settled = await settle(pending, purchase_id, "PAID")
    confirms = await asyncio.gather(*(confirm(pending, account_id, purchase_id) for _ in range(8)))
    # then one grant
    assert settled["__typename"] == "PackPurchased"
    assert {c["__typename"] for c in confirms} == {"PackPurchased"}
    assert len(await grants_of(rows, account_id, purchase_id)) == 1
    assert (await pending.balances(account_id))["packBalance"] == 500
    assert (await buy(pending, account_id))["__typename"] == "PackPurchased"


@pytest.mark.parametrize("outcome", ["FAILED", "EXPIRED"])
async def test_an_unpaid_purchase_ends_without_credits(
    pending: Api, rows: Rows, outcome: str
) -> None:
    account_id = await pending.subscribed_account()
    purchase_id = (await buy(pending, account_id))["purchase"]["id"]
    result = await settle(pending, purchase_id, outcome)
    assert result["__typename"] == "PurchaseClosed"
    assert result["purchase"]["status"] == outcome
    assert await grants_of(rows, account_id, purchase_id) == []
    # a retry of the same key reports the same ended purchase; a new key starts afresh
    assert (await buy(pending, account_id))["__typename"] == "PurchaseClosed"
    assert (await buy(pending, account_id, key="buy-2"))["__typename"] == "PaymentPending"


async def test_a_payment_after_the_subscription_was_cancelled_is_refunded_not_credited(
    pending: Api, rows: Rows, app: Any
) -> None:
    account_id = await pending.subscribed_account()
    purchase_id = (await buy(pending, account_id))["purchase"]["id"]
    await pending.as_service(
        "mutation C($id: ID!) { cancelSubscription(accountId: $id) { id } }", {"id": account_id}
    )
    # when the payment comes in
    result = await settle(pending, purchase_id, "PAID")
    # then it is refunded and nothing is credited
    assert result["__typename"] == "PurchaseClosed"
    assert result["purchase"]["status"] == "REFUNDED"
    assert "subscription ended" in result["message"]
    assert result["purchase"]["refundedCents"] == 1000
    assert await grants_of(rows, account_id, purchase_id) == []
    assert (await pending.balances(account_id))["packBalance"] == 0
    assert (await rows.count("purchase_reversals")) == 1


async def test_a_pack_taken_off_sale_before_the_payment_is_refunded(
    pending: Api, rows: Rows
) -> None:
    account_id = await pending.subscribed_account()
    purchase_id = (await buy(pending, account_id))["purchase"]["id"]
    await rows.execute("UPDATE credit_packs SET on_sale = false WHERE id = 'pack-500'")
    try:
        result = await settle(pending, purchase_id, "PAID")
        assert result["purchase"]["status"] == "REFUNDED"
        assert "no longer on sale" in result["message"]
        assert (await buy(pending, account_id, key="again"))["__typename"] == "PackNotFound"
    finally:
        await rows.execute("UPDATE credit_packs SET on_sale = true WHERE id = 'pack-500'")


async def test_a_renewal_between_checkout_and_payment_gives_the_pack_the_new_cycle(
    pending: Api, clock: FrozenClock
) -> None:
    account_id = await pending.subscribed_account()  # cycle ends 2026-02-15T12:00Z
    purchase_id = (await buy(pending, account_id))["purchase"]["id"]
    clock.advance(timedelta(days=31))
    result = await settle(pending, purchase_id, "PAID")
    assert result["__typename"] == "PackPurchased"
    assert result["purchase"]["expiresAt"] == "2026-03-15T12:00:00+00:00"
    assert result["account"]["packBalance"] == 500


async def test_a_refund_after_partial_spend_revokes_what_is_left(pending: Api, rows: Rows) -> None:
    account_id = await pending.subscribed_account()
    purchase_id = (await buy(pending, account_id))["purchase"]["id"]
    await settle(pending, purchase_id, "PAID")
    # the subscription credits (1000) and 40 pack credits are spent
    for n in range(13):
        assert (await pending.run(account_id, "ULTRA", key=f"run-{n}"))["__typename"] == (
            "GeneratorRun"
        )
    assert (await pending.balances(account_id))["packBalance"] == 460
    # when the payment is refunded in full
    result = await settle(pending, purchase_id, "REFUNDED")
    # then what is left of the pack goes; the 40 already spent are recorded as short
    purchase = result["purchase"]
    assert purchase["status"] == "REFUNDED"
    assert (purchase["revokedCredits"], purchase["revocationTarget"]) == (460, 500)
    assert (await pending.balances(account_id))["packBalance"] == 0
    revocations = [e for e in await rows.ledger(account_id) if e["kind"] == "REVOCATION"]
    assert [e["amount"] for e in revocations] == [-460]


async def test_a_dispute_won_gives_the_credits_back_and_a_dispute_lost_is_final(
    pending: Api, rows: Rows
) -> None:
    account_id = await pending.subscribed_account()
    won = (await buy(pending, account_id, key="won"))["purchase"]["id"]
    lost = (await buy(pending, account_id, "pack-1500", key="lost"))["purchase"]["id"]
    await settle(pending, won, "PAID")
    await settle(pending, lost, "PAID")
    # when both are disputed
    disputed = await settle(pending, won, "DISPUTED")
    await settle(pending, lost, "DISPUTED")
    # then their credits are withheld
    assert disputed["purchase"]["status"] == "DISPUTED"
    assert (await pending.balances(account_id))["packBalance"] == 0
    # when one dispute is won and the other lost
    assert (await settle(pending, won, "DISPUTE_WON"))["__typename"] == "PackPurchased"
    closed = await settle(pending, lost, "DISPUTE_LOST")
    # then the won pack is back and the lost one is revoked for good
    assert closed["purchase"]["status"] == "REVOKED"
    assert closed["purchase"]["revokedCredits"] == 1500
    assert (await pending.balances(account_id))["packBalance"] == 500
    # a repeated outcome changes nothing
    await settle(pending, lost, "DISPUTE_LOST")
    assert (await pending.balances(account_id))["packBalance"] == 500


async def test_the_audit_agrees_after_every_kind_of_purchase(pending: Api, app: Any) -> None:
    account_id = await pending.subscribed_account()
    outcomes = ["PAID", "FAILED", "EXPIRED", "REFUNDED", "DISPUTE_WON", "DISPUTE_LOST"]
    for n, outcome in enumerate(outcomes):
        purchase_id = (await buy(pending, account_id, key=f"k{n}"))["purchase"]["id"]
        if outcome in ("REFUNDED", "DISPUTE_WON", "DISPUTE_LOST"):
            await settle(pending, purchase_id, "PAID")
            if outcome != "REFUNDED":
                await settle(pending, purchase_id, "DISPUTED")
        await settle(pending, purchase_id, outcome)
    await pending.run(account_id, "ULTRA", key="spend")
    report = await run_audit(app.state.services)
    assert report.findings == []
    assert report.pack_purchases == len(outcomes)


async def test_purchases_are_read_by_id_and_as_a_connection_by_their_owner_only(
    pending: Api,
) -> None:
    owner = await pending.subscribed_account()
    other = await pending.subscribed_account()
    ids = [(await buy(pending, owner, key=f"k{n}"))["purchase"]["id"] for n in range(3)]
    # the owner reads one purchase and pages through all, newest first
    one = (await pending.as_user(owner, PURCHASE, {"id": ids[0]}))["purchase"]
    assert one["id"] == ids[0] and one["status"] == "PENDING"
    page = (await pending.as_user(owner, PURCHASES, {"first": 2}))["me"]["purchases"]
    rest = (
        await pending.as_user(
            owner, PURCHASES, {"first": 2, "after": page["pageInfo"]["endCursor"]}
        )
    )["me"]["purchases"]
    seen = [e["node"]["id"] for e in page["edges"] + rest["edges"]]
    assert sorted(seen) == sorted(ids) and page["pageInfo"]["hasNextPage"]
    assert not rest["pageInfo"]["hasNextPage"]
    # another user sees nothing of it
    assert (await pending.as_user(other, PURCHASE, {"id": ids[0]}))["purchase"] is None
    assert (await confirm(pending, other, ids[0]))["__typename"] == "PurchaseNotFound"
    # a service token sees any
    assert (await pending.as_service(PURCHASE, {"id": ids[0]}))["purchase"]["id"] == ids[0]


async def test_settling_sandbox_payments_needs_a_service_token(pending: Api) -> None:
    account_id = await pending.subscribed_account()
    purchase_id = (await buy(pending, account_id))["purchase"]["id"]
    response = await pending.post(
        SETTLE, {"id": purchase_id, "outcome": "PAID"}, token=pending.token(account_id)
    )
    assert response["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await pending.balances(account_id))["packBalance"] == 0


async def test_without_the_sandbox_there_is_no_sandbox_mutation(make_api: ApiFactory) -> None:
    stripe = await make_api(env="production")
    settle_one = 'mutation { sandboxSettlePayment(purchaseId: "x", outcome: PAID) { __typename } }'
    response = await stripe.post(settle_one, token=stripe.token())
    assert response["errors"][0]["message"].startswith("Cannot query field 'sandboxSettlePayment'")
