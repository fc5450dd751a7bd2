"""App Store purchases end to end: StoreKit 2 transactions and Server Notifications V2.

The gateway verifies with Apple's own ``SignedDataVerifier``; the transactions and
notifications are signed here by a certificate chain made for the test (root, intermediate
and leaf with Apple's marker extensions, ``tests/payments/apple_signing.py``) whose root is
the one the gateway trusts, as the library's own tests do.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.clock import FrozenClock
from app.services.audit import run_audit
from tests.api_client import Api
from tests.conftest import ApiFactory
from tests.db import Rows
from tests.payments.apple_signing import (
    APP_APPLE_ID,
    BUNDLE_ID,
    AppleChain,
    OcspResponder,
    notification,
    transaction,
)
from tests.payments.stores import grants, purchase, redeem, store_purchases

NOTIFICATIONS = "/payments/apple/notifications"


class AppStore:
    """The gateway configured for the App Store, and the test's Apple that signs for it."""

    def __init__(self, api: Api, chain: AppleChain, clock: FrozenClock) -> None:
        self.api = api
        self.chain = chain
        self.clock = clock

    @property
    def app(self) -> Any:
        return self.api.client._transport.app  # type: ignore[attr-defined]

    def signed(self, account_id: str | None, **fields: Any) -> tuple[str, dict[str, Any]]:
        payload = transaction(account_id=account_id, purchased_at=self.clock.now(), **fields)
        return self.chain.sign(payload), payload

    async def redeem(self, account_id: str, signed: str, **extra: Any) -> Any:
        return await redeem(
            self.api, account_id, store="APP_STORE", signedTransaction=signed, **extra
        )

    async def notify(
        self, kind: str, payload: dict[str, Any], *, uuid: str | None = None, after: timedelta
    ) -> Any:
        """Apple posting a notification about ``payload``, signed ``after`` the purchase."""
        at = self.clock.now() + after
        signed_transaction = self.chain.sign({**payload, "signedDate": int(at.timestamp() * 1000)})
        body = notification(kind, signed_transaction, signed_at=at, notification_uuid=uuid)
        signed = self.chain.sign(body)
        return await self.api.client.post(NOTIFICATIONS, json={"signedPayload": signed})


def app_store_settings(tmp_path: Path, chain: AppleChain, **changes: Any) -> dict[str, Any]:
    root = tmp_path / "AppleRootCA-test.cer"
    root.write_bytes(chain.root_der)
    return {
        "app_store_bundle_id": BUNDLE_ID,
        "app_store_app_apple_id": APP_APPLE_ID,
        "app_store_environment": "SANDBOX",
        "app_store_root_certificates": (root,),
        **changes,
    }


@pytest.fixture
def chain() -> AppleChain:
    return AppleChain.generate()


@pytest.fixture
async def apple(
    make_api: ApiFactory, tmp_path: Path, chain: AppleChain, clock: FrozenClock
) -> AppStore:
    return AppStore(await make_api(**app_store_settings(tmp_path, chain)), chain, clock)


async def test_a_signed_transaction_credits_its_pack_once(apple: AppStore, rows: Rows) -> None:
    # given a subscriber who bought pack-500 in the app, appAccountToken set to their id
    account_id = await apple.api.subscribed_account()
    signed, payload = apple.signed(account_id)
    # when the app sends the transaction, and sends it again
    first = await apple.redeem(account_id, signed)
    again = await apple.redeem(account_id, signed)
    # then the pack is credited once, as a purchase of the App Store
    assert first["__typename"] == "PackPurchased", first
    bought = first["purchase"]
    assert (bought["provider"], bought["status"], bought["packId"]) == (
        "APP_STORE",
        "FULFILLED",
        "pack-500",
    )
    assert (bought["credits"], bought["priceCents"], bought["currency"]) == (500, 1000, "USD")
    assert first["account"]["packBalance"] == 500
    assert again["__typename"] == "PackPurchased"
    assert again["purchase"]["id"] == bought["id"]
    assert again["account"]["packBalance"] == 500
    (row,) = await store_purchases(rows)
    assert row["payment_reference"] == payload["transactionId"]
    assert len(await grants(rows, account_id)) == 1
    assert (await run_audit(apple.app.state.services)).findings == []


async def test_a_quantity_above_one_credits_that_many_packs(apple: AppStore, rows: Rows) -> None:
    account_id = await apple.api.subscribed_account()
    signed, _ = apple.signed(account_id, quantity=3)
    result = await apple.redeem(account_id, signed)
    assert result["__typename"] == "PackPurchased"
    assert (result["purchase"]["credits"], result["purchase"]["priceCents"]) == (1500, 3000)
    assert result["account"]["packBalance"] == 1500
    ((grant,),) = [await grants(rows, account_id)]
    assert grant["amount"] == 1500


def _forgeries(chain: AppleChain, payload: dict[str, Any]) -> dict[str, str]:
    other = AppleChain.generate()
    genuine = chain.sign(payload)
    header, body, signature = genuine.split(".")
    tampered = json.loads(base64.urlsafe_b64decode(body + "=="))
    tampered["quantity"] = 10
    tampered_body = base64.urlsafe_b64encode(json.dumps(tampered).encode()).rstrip(b"=").decode()
    return {
        "another key, Apple's chain": chain.sign(payload, key=other.leaf_key),
        "an untrusted chain": other.sign(payload),
        "a tampered payload": f"{header}.{tampered_body}.{signature}",
        "no signature": f"{header}.{body}.",
        "not a JWS": "eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24",
        # chains up to the trusted root, but without Apple's extensions
        "a leaf without Apple's marker": AppleChain.generate(leaf_marker=False, under=chain).sign(
            payload
        ),
        "an intermediate without Apple's marker": AppleChain.generate(
            intermediate_marker=False, under=chain
        ).sign(payload),
    }


@pytest.mark.parametrize(
    "forgery",
    [
        "another key, Apple's chain",
        "an untrusted chain",
        "a tampered payload",
        "no signature",
        "not a JWS",
        "a leaf without Apple's marker",
        "an intermediate without Apple's marker",
    ],
)
async def test_a_transaction_not_signed_by_apple_is_refused_and_changes_nothing(
    apple: AppStore, rows: Rows, forgery: str
) -> None:
    account_id = await apple.api.subscribed_account()
    payload = transaction(account_id=account_id, purchased_at=apple.clock.now())
    signed = _forgeries(apple.chain, payload)[forgery]
    result = await apple.redeem(account_id, signed)
    assert result["__typename"] == "StorePurchaseInvalid", result
    assert result["reason"] == "INVALID_SIGNATURE"
    assert await store_purchases(rows) == []
    assert await grants(rows, account_id) == []


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"bundle_id": "com.someone.else"}, "WRONG_APP"),
        ({"environment": "Production"}, "WRONG_ENVIRONMENT"),
        ({"environment": "Xcode"}, "WRONG_ENVIRONMENT"),
    ],
)
async def test_a_transaction_of_another_app_or_environment_is_refused(
    apple: AppStore, rows: Rows, fields: dict[str, Any], reason: str
) -> None:
    account_id = await apple.api.subscribed_account()
    signed, _ = apple.signed(account_id, **fields)
    result = await apple.redeem(account_id, signed)
    assert (result["__typename"], result["reason"]) == ("StorePurchaseInvalid", reason)
    assert await store_purchases(rows) == []


async def test_another_accounts_app_account_token_is_refused(apple: AppStore, rows: Rows) -> None:
    buyer = await apple.api.subscribed_account()
    other = await apple.api.subscribed_account()
    signed, _ = apple.signed(buyer)
    unset, _ = apple.signed(None)
    for proof in (signed, unset):
        result = await apple.redeem(other, proof)
        assert (result["__typename"], result["reason"]) == ("StorePurchaseInvalid", "WRONG_ACCOUNT")
    assert await store_purchases(rows) == []
    assert (await apple.api.balances(other))["packBalance"] == 0


async def test_a_proof_credited_to_one_account_is_refused_to_another(
    apple: AppStore, rows: Rows
) -> None:
    buyer = await apple.api.subscribed_account()
    other = await apple.api.subscribed_account()
    signed, _ = apple.signed(buyer)
    assert (await apple.redeem(buyer, signed))["__typename"] == "PackPurchased"
    replay = await apple.redeem(other, signed)
    assert replay["__typename"] == "StorePurchaseAlreadyRedeemed", replay
    assert (await apple.api.balances(other))["packBalance"] == 0
    assert len(await store_purchases(rows)) == 1


async def test_a_product_id_that_disagrees_with_the_transaction_is_refused(
    apple: AppStore, rows: Rows
) -> None:
    account_id = await apple.api.subscribed_account()
    signed, _ = apple.signed(account_id)
    result = await apple.redeem(account_id, signed, productId="com.creditgate.pack4000")
    assert (result["__typename"], result["reason"]) == ("StorePurchaseInvalid", "WRONG_PRODUCT")


async def test_a_refunded_transaction_is_not_credited(apple: AppStore, rows: Rows) -> None:
    account_id = await apple.api.subscribed_account()
    signed, _ = apple.signed(account_id, revoked_at=apple.clock.now())
    result = await apple.redeem(account_id, signed)
    assert (result["__typename"], result["reason"]) == ("StorePurchaseInvalid", "NOT_PURCHASED")
    assert await store_purchases(rows) == []


async def test_without_a_subscription_the_proof_is_refused_until_there_is_one(
    apple: AppStore, rows: Rows
) -> None:
    account_id = await apple.api.create_account()
    signed, _ = apple.signed(account_id)
    refused = await apple.redeem(account_id, signed)
    assert refused["__typename"] == "SubscriptionRequired"
    assert await store_purchases(rows) == []
    # the app keeps the transaction unfinished; once subscribed, the same proof is credited
    await apple.api.subscribe(account_id)
    assert (await apple.redeem(account_id, signed))["__typename"] == "PackPurchased"


async def test_a_product_not_in_the_catalog_is_pack_not_found(apple: AppStore, rows: Rows) -> None:
    account_id = await apple.api.subscribed_account()
    signed, _ = apple.signed(account_id, product_id="com.creditgate.unknown")
    result = await apple.redeem(account_id, signed)
    assert result["__typename"] == "PackNotFound"
    assert await store_purchases(rows) == []


async def test_settings_map_a_store_product_to_a_pack(
    make_api: ApiFactory, tmp_path: Path, chain: AppleChain, clock: FrozenClock
) -> None:
    api = await make_api(
        **app_store_settings(
            tmp_path, chain, store_products=("APP_STORE:com.example.big=pack-4000",)
        )
    )
    store = AppStore(api, chain, clock)
    account_id = await api.subscribed_account()
    signed, _ = store.signed(account_id, product_id="com.example.big")
    result = await store.redeem(account_id, signed)
    assert (result["__typename"], result["purchase"]["packId"]) == ("PackPurchased", "pack-4000")


async def test_the_app_store_not_configured_is_store_unavailable(
    api: Api, chain: AppleChain
) -> None:
    account_id = await api.subscribed_account()
    signed = chain.sign(transaction(account_id=account_id, purchased_at=api.clock.now()))
    result = await redeem(api, account_id, store="APP_STORE", signedTransaction=signed)
    assert (result["__typename"], result["reason"]) == ("StorePurchaseInvalid", "STORE_UNAVAILABLE")


async def test_a_proof_without_signed_transaction_is_missing_proof(apple: AppStore) -> None:
    account_id = await apple.api.subscribed_account()
    result = await redeem(apple.api, account_id, store="APP_STORE")
    assert (result["__typename"], result["reason"]) == ("StorePurchaseInvalid", "MISSING_PROOF")


async def test_a_service_token_cannot_redeem(apple: AppStore) -> None:
    from tests.payments.stores import REDEEM

    body = await apple.api.post(
        REDEEM, {"input": {"store": "APP_STORE", "signedTransaction": "x"}}, token=apple.api.token()
    )
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_one_proof_sent_at_once_by_its_owner_and_another_account_grants_once(
    apple: AppStore, rows: Rows
) -> None:
    buyer = await apple.api.subscribed_account()
    other = await apple.api.subscribed_account()
    signed, _ = apple.signed(buyer)
    calls = [apple.redeem(who, signed) for who in (buyer, other, buyer, other, buyer)]
    answers = await asyncio.gather(*calls)
    names = [a["__typename"] for a in answers]
    assert names[0::2] == ["PackPurchased"] * 3
    assert {a["purchase"]["id"] for a in answers[0::2]} == {answers[0]["purchase"]["id"]}
    assert set(names[1::2]) <= {"StorePurchaseInvalid", "StorePurchaseAlreadyRedeemed"}
    assert len(await store_purchases(rows)) == 1
    assert len(await grants(rows, buyer)) == 1
    assert await grants(rows, other) == []


# -- App Store Server Notifications V2 -------------------------------------------------------


async def _spend(api: Api, account_id: str, runs: int) -> None:
    for n in range(runs):
        assert (await api.run(account_id, "ULTRA", key=f"run-{n}"))["__typename"] == "GeneratorRun"


async def test_a_refund_after_partial_spend_revokes_what_is_left(
    apple: AppStore, rows: Rows
) -> None:
    # given a credited pack of which 40 credits are spent (after the 1000 of the plan)
    account_id = await apple.api.subscribed_account()
    signed, payload = apple.signed(account_id)
    purchase_id = (await apple.redeem(account_id, signed))["purchase"]["id"]
    await _spend(apple.api, account_id, 13)
    assert (await apple.api.balances(account_id))["packBalance"] == 460
    # when Apple notifies the refund
    refunded = {**payload, "revocationDate": payload["purchaseDate"] + 1000, "revocationReason": 0}
    response = await apple.notify("REFUND", refunded, after=timedelta(hours=1))
    # then what is left of the pack goes, as for a card refund
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "refunded"
    bought = await purchase(apple.api, purchase_id)
    assert bought["status"] == "REFUNDED"
    assert (bought["revokedCredits"], bought["revocationTarget"], bought["refundedCents"]) == (
        460,
        500,
        1000,
    )
    assert (await apple.api.balances(account_id))["packBalance"] == 0
    assert (await run_audit(apple.app.state.services)).findings == []
    # and the same proof now answers that the purchase is closed
    assert (await apple.redeem(account_id, signed))["__typename"] == "PurchaseClosed"


async def test_a_redelivered_notification_is_acted_on_once(apple: AppStore, rows: Rows) -> None:
    account_id = await apple.api.subscribed_account()
    signed, payload = apple.signed(account_id, quantity=2)
    purchase_id = (await apple.redeem(account_id, signed))["purchase"]["id"]
    refunded = {**payload, "revocationDate": payload["purchaseDate"] + 1000}
    first = await apple.notify("REFUND", refunded, uuid="n-1", after=timedelta(hours=1))
    again = await apple.notify("REFUND", refunded, uuid="n-1", after=timedelta(hours=1))
    # Apple retrying with a new signature but the same notificationUUID, and a second
    # notification about the same refund (another UUID) change nothing either
    other = await apple.notify("REFUND", refunded, uuid="n-2", after=timedelta(hours=2))
    assert [r.json()["outcome"] for r in (first, again, other)] == [
        "refunded",
        "duplicate",
        "duplicate",
    ]
    revocations = [e for e in await rows.ledger(account_id) if e["kind"] == "REVOCATION"]
    assert [e["amount"] for e in revocations] == [-1000]
    assert (await purchase(apple.api, purchase_id))["status"] == "REFUNDED"


async def test_a_refund_reversed_gives_the_credits_back(apple: AppStore, rows: Rows) -> None:
    account_id = await apple.api.subscribed_account()
    signed, payload = apple.signed(account_id)
    purchase_id = (await apple.redeem(account_id, signed))["purchase"]["id"]
    refunded = {**payload, "revocationDate": payload["purchaseDate"] + 1000}
    await apple.notify("REFUND", refunded, after=timedelta(hours=1))
    assert (await apple.api.balances(account_id))["packBalance"] == 0
    response = await apple.notify("REFUND_REVERSED", payload, after=timedelta(hours=2))
    assert response.json()["outcome"] == "refund_reversed"
    bought = await purchase(apple.api, purchase_id)
    assert (bought["status"], bought["revokedCredits"], bought["refundedCents"]) == (
        "FULFILLED",
        0,
        0,
    )
    assert (await apple.api.balances(account_id))["packBalance"] == 500
    assert (await run_audit(apple.app.state.services)).findings == []


async def test_notifications_out_of_order_end_in_the_latest_state(
    apple: AppStore, rows: Rows
) -> None:
    account_id = await apple.api.subscribed_account()
    signed, payload = apple.signed(account_id)
    purchase_id = (await apple.redeem(account_id, signed))["purchase"]["id"]
    refunded = {**payload, "revocationDate": payload["purchaseDate"] + 1000}
    # the reversal (signed later) arrives before the refund it reverses
    reversed_first = await apple.notify("REFUND_REVERSED", payload, after=timedelta(hours=2))
    refund_late = await apple.notify("REFUND", refunded, after=timedelta(hours=1))
    assert [r.status_code for r in (reversed_first, refund_late)] == [200, 200]
    assert refund_late.json()["outcome"] == "duplicate"
    assert (await purchase(apple.api, purchase_id))["status"] == "FULFILLED"
    assert (await apple.api.balances(account_id))["packBalance"] == 500
    # a refund signed after the reversal is a new refund, and is applied
    again = await apple.notify("REFUND", refunded, after=timedelta(hours=3))
    assert again.json()["outcome"] == "refunded"
    assert (await purchase(apple.api, purchase_id))["status"] == "REFUNDED"
    assert (await apple.api.balances(account_id))["packBalance"] == 0
    assert (await run_audit(apple.app.state.services)).findings == []


async def test_a_prorated_refund_revokes_its_share(apple: AppStore, rows: Rows) -> None:
    account_id = await apple.api.subscribed_account()
    signed, payload = apple.signed(account_id, quantity=2)
    purchase_id = (await apple.redeem(account_id, signed))["purchase"]["id"]
    refunded = {
        **payload,
        "revocationDate": payload["purchaseDate"] + 1000,
        "revocationType": "REFUND_PRORATED",
        "revocationPercentage": 50000,  # 50.000 %
    }
    await apple.notify("REFUND", refunded, after=timedelta(hours=1))
    bought = await purchase(apple.api, purchase_id)
    assert (bought["status"], bought["revokedCredits"], bought["refundedCents"]) == (
        "FULFILLED",
        500,
        1000,
    )
    assert (await apple.api.balances(account_id))["packBalance"] == 500


async def test_a_purchase_the_app_never_sent_is_credited_from_its_notification(
    apple: AppStore, rows: Rows
) -> None:
    account_id = await apple.api.subscribed_account()
    _, payload = apple.signed(account_id)
    response = await apple.notify("ONE_TIME_CHARGE", payload, after=timedelta(seconds=5))
    assert response.json()["outcome"] == "fulfilled"
    assert (await apple.api.balances(account_id))["packBalance"] == 500
    # the app sending it later gets the same purchase
    late = await apple.redeem(account_id, apple.chain.sign(payload))
    assert late["__typename"] == "PackPurchased"
    assert len(await store_purchases(rows)) == 1


async def test_a_refund_of_a_transaction_never_redeemed_changes_nothing(
    apple: AppStore, rows: Rows
) -> None:
    account_id = await apple.api.subscribed_account()
    _, payload = apple.signed(account_id)
    refunded = {**payload, "revocationDate": payload["purchaseDate"] + 1000}
    response = await apple.notify("REFUND", refunded, after=timedelta(hours=1))
    assert (response.status_code, response.json()["outcome"]) == (200, "unknown_purchase")
    assert await rows.count("purchase_reversals") == 0


@pytest.mark.parametrize("forgery", ["another key", "untrusted chain", "not json", "no payload"])
async def test_a_notification_not_signed_by_apple_is_400_and_writes_nothing(
    apple: AppStore, rows: Rows, forgery: str
) -> None:
    account_id = await apple.api.subscribed_account()
    signed, payload = apple.signed(account_id)
    await apple.redeem(account_id, signed)
    refunded = {**payload, "revocationDate": payload["purchaseDate"] + 1000}
    at = apple.clock.now() + timedelta(hours=1)
    body = notification("REFUND", apple.chain.sign(refunded), signed_at=at)
    other = AppleChain.generate()
    contents = {
        "another key": json.dumps(
            {"signedPayload": apple.chain.sign(body, key=other.leaf_key)}
        ).encode(),
        "untrusted chain": json.dumps({"signedPayload": other.sign(body)}).encode(),
        "not json": b"signedPayload=abc",
        "no payload": b"{}",
    }
    response = await apple.api.client.post(NOTIFICATIONS, content=contents[forgery])
    assert response.status_code == 400
    assert await rows.count("payment_events") == 0
    assert (await apple.api.balances(account_id))["packBalance"] == 500


async def test_a_notification_for_another_bundle_is_400(apple: AppStore, rows: Rows) -> None:
    account_id = await apple.api.subscribed_account()
    _, payload = apple.signed(account_id)
    at = apple.clock.now() + timedelta(hours=1)
    body = notification(
        "REFUND", apple.chain.sign(payload), signed_at=at, bundle_id="com.someone.else"
    )
    response = await apple.api.client.post(
        NOTIFICATIONS, json={"signedPayload": apple.chain.sign(body)}
    )
    assert response.status_code == 400
    assert await rows.count("payment_events") == 0


async def test_a_test_notification_is_acknowledged_and_ignored(apple: AppStore, rows: Rows) -> None:
    at = apple.clock.now()
    body = {
        "notificationType": "TEST",
        "notificationUUID": "test-1",
        "signedDate": int(at.timestamp() * 1000),
        "data": {"bundleId": BUNDLE_ID, "appAppleId": APP_APPLE_ID, "environment": "Sandbox"},
    }
    response = await apple.api.client.post(
        NOTIFICATIONS, json={"signedPayload": apple.chain.sign(body)}
    )
    assert (response.status_code, response.json()["outcome"]) == (200, "ignored")


async def test_a_chain_under_the_trusted_root_with_apples_markers_verifies(
    apple: AppStore, rows: Rows
) -> None:
    """The control for the marker forgeries: the same kind of chain, markers present."""
    account_id = await apple.api.subscribed_account()
    sibling = AppleChain.generate(under=apple.chain)
    payload = transaction(account_id=account_id, purchased_at=apple.clock.now())
    assert (await apple.redeem(account_id, sibling.sign(payload)))["__typename"] == "PackPurchased"


# -- production: Apple's environment only, and online revocation checks -----------------------


@pytest.fixture
def ocsp() -> Iterator[OcspResponder]:
    responder = OcspResponder().start()
    yield responder
    responder.stop()


async def test_production_checks_the_chain_online_and_refuses_a_revoked_leaf(
    make_api: ApiFactory, tmp_path: Path, clock: FrozenClock, ocsp: OcspResponder, rows: Rows
) -> None:
    # given a production gateway (online checks on by default) and Apple's OCSP responder
    chain = AppleChain.generate(ocsp_url=ocsp.url)
    ocsp.chain = chain
    settings = app_store_settings(
        tmp_path, chain, env="production", app_store_environment="PRODUCTION"
    )
    store = AppStore(await make_api(**settings), chain, clock)
    account_id = await store.api.subscribed_account()
    signed, _ = store.signed(account_id, environment="Production")
    # when the responder says the chain is good, the transaction is credited
    assert (await store.redeem(account_id, signed))["__typename"] == "PackPurchased"
    assert ocsp.requests == 2  # the intermediate, then the leaf
    # when Apple revokes the signing certificate, a new transaction from it is refused
    revoked_chain = AppleChain.generate(ocsp_url=ocsp.url, under=chain)
    revoked_chain.revoked.add(revoked_chain.leaf.serial_number)
    ocsp.chain = revoked_chain
    payload = transaction(account_id=account_id, purchased_at=clock.now(), environment="Production")
    refused = await store.redeem(account_id, revoked_chain.sign(payload))
    assert (refused["__typename"], refused["reason"]) == (
        "StorePurchaseInvalid",
        "INVALID_SIGNATURE",
    )
    # and an unreachable responder is a retry later, not a refusal
    ocsp.down = True
    payload = transaction(account_id=account_id, purchased_at=clock.now(), environment="Production")
    later = await store.redeem(
        account_id, AppleChain.generate(ocsp_url=ocsp.url, under=chain).sign(payload)
    )
    assert later["__typename"] == "PaymentProviderUnavailable"
    assert len(await store_purchases(rows)) == 1


async def test_production_refuses_a_sandbox_transaction(
    make_api: ApiFactory, tmp_path: Path, clock: FrozenClock, ocsp: OcspResponder
) -> None:
    chain = AppleChain.generate(ocsp_url=ocsp.url)
    ocsp.chain = chain
    settings = app_store_settings(
        tmp_path, chain, env="production", app_store_environment="PRODUCTION"
    )
    store = AppStore(await make_api(**settings), chain, clock)
    account_id = await store.api.subscribed_account()
    signed, _ = store.signed(account_id, environment="Sandbox")
    result = await store.redeem(account_id, signed)
    assert (result["__typename"], result["reason"]) == ("StorePurchaseInvalid", "WRONG_ENVIRONMENT")


async def test_store_purchases_and_notifications_are_counted_by_provider(
    apple: AppStore, rows: Rows
) -> None:
    account_id = await apple.api.subscribed_account()
    signed, payload = apple.signed(account_id)
    await apple.redeem(account_id, signed)
    refunded = {**payload, "revocationDate": payload["purchaseDate"] + 1000}
    await apple.notify("REFUND", refunded, after=timedelta(hours=1))
    metrics = (await apple.api.client.get("/metrics")).text
    assert 'creditgate_pack_purchases_total{provider="APP_STORE",status="FULFILLED"} 1.0' in metrics
    assert 'creditgate_pack_purchases_total{provider="APP_STORE",status="REFUNDED"} 1.0' in metrics
    assert (
        'creditgate_payment_webhook_events_total{outcome="refunded",provider="APP_STORE",'
        'type="REFUND"} 1.0'
    ) in metrics


async def test_an_upper_cased_app_account_token_is_the_same_account(
    apple: AppStore, rows: Rows
) -> None:
    """StoreKit hands the UUID back as the app formatted it; account ids are lower case."""
    account_id = await apple.api.subscribed_account()
    signed, _ = apple.signed(account_id.upper())
    assert (await apple.redeem(account_id, signed))["__typename"] == "PackPurchased"
    _, payload = apple.signed(account_id.upper())
    response = await apple.notify("ONE_TIME_CHARGE", payload, after=timedelta(seconds=5))
    assert response.json()["outcome"] == "fulfilled"
    assert (await apple.api.balances(account_id))["packBalance"] == 1000


async def test_the_catalog_names_each_packs_store_products(make_api: ApiFactory) -> None:
    api = await make_api(store_products=("GOOGLE_PLAY:credits_500_v2=pack-500",))
    data = await api.data("{ creditPacks { id appStoreProductId googlePlayProductId } }")
    assert data["creditPacks"][:2] == [
        {
            "id": "pack-500",
            "appStoreProductId": "com.creditgate.pack500",
            "googlePlayProductId": "credits_500_v2",
        },
        {
            "id": "pack-1500",
            "appStoreProductId": "com.creditgate.pack1500",
            "googlePlayProductId": "pack_1500",
        },
    ]


async def test_one_refund_delivered_several_times_at_once_revokes_once(
    apple: AppStore, rows: Rows
) -> None:
    account_id = await apple.api.subscribed_account()
    signed, payload = apple.signed(account_id)
    purchase_id = (await apple.redeem(account_id, signed))["purchase"]["id"]
    refunded = {**payload, "revocationDate": payload["purchaseDate"] + 1000}
    # Apple's retries racing each other (one UUID) and a second notification of the refund
    deliveries = [
        apple.notify("REFUND", refunded, uuid=uuid, after=timedelta(hours=1))
        for uuid in ("n-1", "n-1", "n-1", "n-2")
    ]
    responses = await asyncio.gather(*deliveries)
    assert [r.status_code for r in responses] == [200] * 4
    # the one that applied it may lose the race to record the event id: then it says
    # "duplicate" too; what counts is the ledger
    assert [r.json()["outcome"] for r in responses].count("refunded") <= 1
    assert await rows.count("payment_events") == 2
    revocations = [e for e in await rows.ledger(account_id) if e["kind"] == "REVOCATION"]
    assert [e["amount"] for e in revocations] == [-500]
    assert (await purchase(apple.api, purchase_id))["status"] == "REFUNDED"
    assert (await run_audit(apple.app.state.services)).findings == []
