"""Stripe end to end: purchasePack, the signed webhook, confirm and reconcile, over HTTP.

The gateway runs with the real ``stripe`` SDK pointed at a loopback stand-in of the few
endpoints it uses (``fake_stripe``); webhooks are signed by the SDK's own signer with the
test secret, as Stripe's own tests do.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest

from app.clock import FrozenClock
from app.services.audit import run_audit
from app.services.payment_events import reconcile
from tests.api.test_pack_payments import CONFIRM, buy, grants_of
from tests.api_client import Api
from tests.conftest import ApiFactory
from tests.db import Rows
from tests.payments.conftest import STRIPE_SECRET_KEY, WEBHOOK_SECRET
from tests.payments.fake_stripe import FakeStripe

WEBHOOK = "/payments/stripe/webhook"


class Shop:
    """The gateway with Stripe, the fake Stripe behind it, and what a test does with both."""

    def __init__(self, api: Api, fake: FakeStripe, app: Any) -> None:
        self.api = api
        self.fake = fake
        self.app = app

    async def checkout(self, account_id: str, key: str = "buy-1", pack: str = "pack-500") -> Any:
        result = await buy(self.api, account_id, pack, key)
        assert result["__typename"] == "PaymentPending", result
        return result

    def session_of(self, purchase_id: str) -> dict[str, Any]:
        (session,) = [
            s for s in self.fake.sessions.values() if s["client_reference_id"] == purchase_id
        ]
        return session

    def charge_of(self, purchase_id: str) -> dict[str, Any]:
        intent = self.fake.payment_intents[self.session_of(purchase_id)["payment_intent"]]
        return self.fake.charges[intent["latest_charge"]]

    async def deliver(
        self, event_type: str, obj: dict[str, Any], *, event_id: str | None = None
    ) -> Any:
        body, headers = self.fake.signed_event(
            event_type, obj, secret=WEBHOOK_SECRET, event_id=event_id
        )
        return await self.api.client.post(WEBHOOK, content=body, headers=headers)

    async def status(self, purchase_id: str) -> str:
        data = await self.api.as_service(
            "query P($id: ID!) { purchase(id: $id) { status } }", {"id": purchase_id}
        )
        return str(data["purchase"]["status"])


@pytest.fixture
async def shop(make_api: ApiFactory, fake_stripe: FakeStripe) -> Shop:
    api = await make_api(
        payment_provider="stripe",
        stripe_secret_key=STRIPE_SECRET_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=fake_stripe.api_base,
    )
    app = api.client._transport.app  # type: ignore[attr-defined]
    return Shop(api, fake_stripe, app)


async def test_a_paid_checkout_is_credited_by_its_webhook(shop: Shop, rows: Rows) -> None:
    account_id = await shop.api.subscribed_account()
    # when the user checks out and pays
    pending = await shop.checkout(account_id)
    purchase_id = pending["purchase"]["id"]
    session = shop.session_of(purchase_id)
    assert pending["checkoutUrl"] == session["url"]
    assert await shop.status(purchase_id) == "PENDING"
    shop.fake.pay(session["id"])
    response = await shop.deliver("checkout.session.completed", shop.fake.sessions[session["id"]])
    # then the webhook credits the pack, once
    assert response.status_code == 200 and response.json()["outcome"] == "fulfilled"
    assert await shop.status(purchase_id) == "FULFILLED"
    assert len(await grants_of(rows, account_id, purchase_id)) == 1
    assert (await shop.api.balances(account_id))["packBalance"] == 500


async def test_the_redirect_confirm_racing_the_webhook_grants_once(shop: Shop, rows: Rows) -> None:
    account_id = await shop.api.subscribed_account()
    purchase_id = (await shop.checkout(account_id))["purchase"]["id"]
    session = shop.session_of(purchase_id)
    shop.fake.pay(session["id"])
    # when the browser's confirm and two webhooks arrive at once
    confirm = shop.api.as_user(account_id, CONFIRM, {"id": purchase_id})
    hooks = [
        shop.deliver("checkout.session.completed", shop.fake.sessions[session["id"]])
        for _ in range(2)
    ]
    answers = await asyncio.gather(confirm, *hooks)
    # then one grant
    assert answers[0]["confirmPackPurchase"]["__typename"] == "PackPurchased"
    assert [a.status_code for a in answers[1:]] == [200, 200]
    assert len(await grants_of(rows, account_id, purchase_id)) == 1
    assert (await shop.api.balances(account_id))["packBalance"] == 500


async def test_a_redelivered_event_answers_200_and_changes_nothing(shop: Shop, rows: Rows) -> None:
    account_id = await shop.api.subscribed_account()
    purchase_id = (await shop.checkout(account_id))["purchase"]["id"]
    session = shop.session_of(purchase_id)
    shop.fake.pay(session["id"])
    paid = shop.fake.sessions[session["id"]]
    first = await shop.deliver("checkout.session.completed", paid, event_id="evt_once")
    again = await shop.deliver("checkout.session.completed", paid, event_id="evt_once")
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["outcome"] == "duplicate"
    assert await rows.count("payment_events") == 1
    assert len(await grants_of(rows, account_id, purchase_id)) == 1


async def test_completed_and_async_succeeded_both_arriving_grant_once(
    shop: Shop, rows: Rows
) -> None:
    account_id = await shop.api.subscribed_account()
    purchase_id = (await shop.checkout(account_id))["purchase"]["id"]
    session = shop.session_of(purchase_id)
    # a bank debit: complete but unpaid, then it succeeds
    shop.fake.start_async(session["id"])
    early = await shop.deliver("checkout.session.completed", shop.fake.sessions[session["id"]])
    assert early.json()["outcome"] == "pending"
    assert await shop.status(purchase_id) == "PENDING"
    shop.fake.pay(session["id"])
    paid = shop.fake.sessions[session["id"]]
    intent = shop.fake.payment_intents[paid["payment_intent"]]
    for event_type, obj in [
        ("checkout.session.async_payment_succeeded", paid),
        ("payment_intent.succeeded", intent),
        ("checkout.session.completed", paid),
    ]:
        assert (await shop.deliver(event_type, obj)).status_code == 200
    assert len(await grants_of(rows, account_id, purchase_id)) == 1
    assert await shop.status(purchase_id) == "FULFILLED"


async def test_an_async_payment_that_fails_credits_nothing(shop: Shop, rows: Rows) -> None:
    account_id = await shop.api.subscribed_account()
    purchase_id = (await shop.checkout(account_id))["purchase"]["id"]
    session = shop.session_of(purchase_id)
    shop.fake.start_async(session["id"])
    shop.fake.fail_async(session["id"])
    failed = shop.fake.sessions[session["id"]]
    assert (await shop.deliver("checkout.session.async_payment_failed", failed)).status_code == 200
    assert await shop.status(purchase_id) == "FAILED"
    assert await grants_of(rows, account_id, purchase_id) == []


async def test_an_expired_checkout_ends_the_purchase(shop: Shop, rows: Rows) -> None:
    account_id = await shop.api.subscribed_account()
    purchase_id = (await shop.checkout(account_id))["purchase"]["id"]
    session = shop.session_of(purchase_id)
    expired = shop.fake.expire(session["id"])
    assert (await shop.deliver("checkout.session.expired", expired)).status_code == 200
    assert await shop.status(purchase_id) == "EXPIRED"


async def test_events_out_of_order_settle_the_payment_before_reversing_it(
    shop: Shop, rows: Rows, app: Any
) -> None:
    account_id = await shop.api.subscribed_account()
    purchase_id = (await shop.checkout(account_id))["purchase"]["id"]
    session = shop.session_of(purchase_id)
    shop.fake.pay(session["id"])
    charge = shop.charge_of(purchase_id)
    shop.fake.refund_charge(charge["id"], 1000)
    # the refund's event comes before the payment's
    assert (
        await shop.deliver("charge.refunded", shop.fake.charges[charge["id"]])
    ).status_code == 200
    late = await shop.deliver("checkout.session.completed", shop.fake.sessions[session["id"]])
    assert late.status_code == 200
    assert await shop.status(purchase_id) == "REFUNDED"
    assert (await shop.api.balances(account_id))["packBalance"] == 0
    assert len(await grants_of(rows, account_id, purchase_id)) == 1
    assert (await run_audit(shop.app.state.services)).findings == []


@pytest.mark.parametrize("forgery", ["wrong secret", "stale", "tampered", "no header"])
async def test_a_webhook_with_a_bad_signature_is_400_and_writes_nothing(
    shop: Shop, rows: Rows, forgery: str
) -> None:
    account_id = await shop.api.subscribed_account()
    purchase_id = (await shop.checkout(account_id))["purchase"]["id"]
    session = shop.session_of(purchase_id)
    shop.fake.pay(session["id"])
    paid = shop.fake.sessions[session["id"]]
    secret = "whsec_attacker" if forgery == "wrong secret" else WEBHOOK_SECRET
    stale = int(shop.api.clock.now().timestamp()) - 3600 if forgery == "stale" else None
    import time

    timestamp = int(time.time()) - 600 if forgery == "stale" else None
    assert stale is None or timestamp is not None
    body, headers = shop.fake.signed_event(
        "checkout.session.completed", paid, secret=secret, timestamp=timestamp
    )
    if forgery == "tampered":
        body = body.replace(b'"livemode": false', b'"livemode": true')
    if forgery == "no header":
        headers.pop("stripe-signature")
    response = await shop.api.client.post(WEBHOOK, content=body, headers=headers)
    assert response.status_code == 400
    assert await rows.count("payment_events") == 0
    assert await shop.status(purchase_id) == "PENDING"
    assert await grants_of(rows, account_id, purchase_id) == []


async def test_a_payment_of_another_amount_is_refunded_and_logged(
    shop: Shop, rows: Rows, caplog: pytest.LogCaptureFixture
) -> None:
    account_id = await shop.api.subscribed_account()
    purchase_id = (await shop.checkout(account_id))["purchase"]["id"]
    session = shop.session_of(purchase_id)
    shop.fake.pay(session["id"], amount_total=1)
    with caplog.at_level(logging.ERROR, logger="creditgate.payments"):
        await shop.deliver("checkout.session.completed", shop.fake.sessions[session["id"]])
    assert await shop.status(purchase_id) == "REFUNDED"
    assert await grants_of(rows, account_id, purchase_id) == []
    assert any("does not match" in r.getMessage() for r in caplog.records)
    refund_keys = [r.idempotency_key for r in shop.fake.requests if r.path == "/v1/refunds"]
    assert refund_keys == [f"refund:{purchase_id}"]


async def test_a_payment_after_cancellation_is_refunded_at_stripe(shop: Shop, rows: Rows) -> None:
    account_id = await shop.api.subscribed_account()
    purchase_id = (await shop.checkout(account_id))["purchase"]["id"]
    await shop.api.as_service(
        "mutation C($id: ID!) { cancelSubscription(accountId: $id) { id } }", {"id": account_id}
    )
    session = shop.session_of(purchase_id)
    shop.fake.pay(session["id"])
    await shop.deliver("checkout.session.completed", shop.fake.sessions[session["id"]])
    assert await shop.status(purchase_id) == "REFUNDED"
    assert [r["amount"] for r in shop.fake.refunds.values()] == [1000]
    # Stripe's own charge.refunded for that refund changes nothing more
    charge = shop.charge_of(purchase_id)
    assert (await shop.deliver("charge.refunded", charge)).status_code == 200
    assert await grants_of(rows, account_id, purchase_id) == []
    assert (await run_audit(shop.app.state.services)).findings == []


async def test_a_partial_refund_after_spending_revokes_in_proportion(
    shop: Shop, rows: Rows
) -> None:
    account_id = await shop.api.subscribed_account()
    purchase_id = (await shop.checkout(account_id))["purchase"]["id"]
    session = shop.session_of(purchase_id)
    shop.fake.pay(session["id"])
    await shop.deliver("checkout.session.completed", shop.fake.sessions[session["id"]])
    for n in range(15):  # 1000 subscription credits, then 200 of the pack's 500
        await shop.api.run(account_id, "ULTRA", key=f"run-{n}")
    assert (await shop.api.balances(account_id))["packBalance"] == 300
    # when $4 of $10 is refunded, then the rest
    charge = shop.charge_of(purchase_id)
    shop.fake.refund_charge(charge["id"], 400)
    await shop.deliver("charge.refunded", shop.fake.charges[charge["id"]])
    balances = await shop.api.balances(account_id)
    data = await shop.api.as_service(
        "query P($id: ID!) { purchase(id: $id) { status refundedCents revokedCredits "
        "revocationTarget } }",
        {"id": purchase_id},
    )
    assert data["purchase"] == {
        "status": "FULFILLED",
        "refundedCents": 400,
        "revokedCredits": 200,
        "revocationTarget": 200,
    }
    assert balances["packBalance"] == 100
    shop.fake.refund_charge(charge["id"], 600)
    await shop.deliver("charge.refunded", shop.fake.charges[charge["id"]])
    data = await shop.api.as_service(
        "query P($id: ID!) { purchase(id: $id) { status revokedCredits revocationTarget } }",
        {"id": purchase_id},
    )
    # 300 of the remaining target could be taken only as far as 100 were left
    assert data["purchase"] == {
        "status": "REFUNDED",
        "revokedCredits": 300,
        "revocationTarget": 500,
    }
    assert (await shop.api.balances(account_id))["packBalance"] == 0
    assert (await run_audit(shop.app.state.services)).findings == []


@pytest.mark.parametrize("won", [True, False])
async def test_a_dispute_withholds_the_credits_until_it_closes(
    shop: Shop, rows: Rows, won: bool
) -> None:
    account_id = await shop.api.subscribed_account()
    purchase_id = (await shop.checkout(account_id))["purchase"]["id"]
    session = shop.session_of(purchase_id)
    shop.fake.pay(session["id"])
    await shop.deliver("checkout.session.completed", shop.fake.sessions[session["id"]])
    dispute = shop.fake.open_dispute(shop.charge_of(purchase_id)["id"])
    # redelivered creation: applied once
    for _ in range(2):
        assert (await shop.deliver("charge.dispute.created", dispute)).status_code == 200
    assert await shop.status(purchase_id) == "DISPUTED"
    assert (await shop.api.balances(account_id))["packBalance"] == 0
    closed = shop.fake.close_dispute(dispute["id"], won=won)
    assert (await shop.deliver("charge.dispute.closed", closed)).status_code == 200
    assert await shop.status(purchase_id) == ("FULFILLED" if won else "REVOKED")
    assert (await shop.api.balances(account_id))["packBalance"] == (500 if won else 0)
    assert (await run_audit(shop.app.state.services)).findings == []


async def test_a_transient_stripe_failure_is_503_and_the_redelivery_grants(
    shop: Shop, rows: Rows
) -> None:
    account_id = await shop.api.subscribed_account()
    purchase_id = (await shop.checkout(account_id))["purchase"]["id"]
    session = shop.session_of(purchase_id)
    shop.fake.pay(session["id"])
    paid = shop.fake.sessions[session["id"]]
    shop.fake.fail_next(10)
    failed = await shop.deliver("checkout.session.completed", paid, event_id="evt_retry")
    assert failed.status_code == 503
    assert await rows.count("payment_events") == 0
    shop.fake.fail_next(0)
    retried = await shop.deliver("checkout.session.completed", paid, event_id="evt_retry")
    assert retried.status_code == 200
    assert len(await grants_of(rows, account_id, purchase_id)) == 1


async def test_stripe_down_at_checkout_is_a_typed_error_and_the_retry_reuses_the_purchase(
    shop: Shop, rows: Rows
) -> None:
    account_id = await shop.api.subscribed_account()
    shop.fake.fail_next(10)
    first = await buy(shop.api, account_id)
    assert first["__typename"] == "PaymentProviderUnavailable"
    shop.fake.fail_next(0)
    again = await shop.checkout(account_id)
    assert await rows.count("pack_purchases") == 1
    assert again["checkoutUrl"] == shop.session_of(again["purchase"]["id"])["url"]


async def test_the_reconciliation_finishes_a_purchase_no_webhook_reported(
    shop: Shop, rows: Rows, clock: FrozenClock
) -> None:
    account_id = await shop.api.subscribed_account()
    purchase_id = (await shop.checkout(account_id))["purchase"]["id"]
    shop.fake.pay(shop.session_of(purchase_id)["id"])
    services = shop.app.state.services
    # not yet due: a purchase pending for less than 10 minutes is left to its webhook
    assert await reconcile(services) == 0
    clock.advance(timedelta(minutes=11))
    assert await reconcile(services) == 1
    assert await shop.status(purchase_id) == "FULFILLED"
    assert len(await grants_of(rows, account_id, purchase_id)) == 1


async def test_an_event_for_a_purchase_that_is_not_ours_is_200(shop: Shop, rows: Rows) -> None:
    foreign = {
        "id": "cs_test_elsewhere",
        "object": "checkout.session",
        "client_reference_id": "not-ours",
        "metadata": {},
    }
    response = await shop.deliver("checkout.session.completed", foreign)
    assert response.status_code == 200 and response.json()["outcome"] == "unknown_purchase"
