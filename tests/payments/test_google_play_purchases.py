"""Google Play purchases end to end: redeem, consume after the commit, RTDN, voided purchases.

The gateway runs the real ``google-api-python-client`` (its bundled discovery document) and
``google-auth`` against a loopback stand-in of the few endpoints used
(``tests/payments/fake_google_play.py``): the service account's key file is generated here
and its token grant verified by the stand-in; Pub/Sub's OIDC tokens are signed by a test key
whose certificate the stand-in serves where Google serves its own.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.clock import FrozenClock
from app.services.audit import run_audit
from app.services.store_purchases import reconcile_stores
from tests.api_client import Api
from tests.conftest import ApiFactory
from tests.db import Rows
from tests.payments.fake_google_play import AUDIENCE, PACKAGE, PUSHER, FakeGooglePlay
from tests.payments.stores import grants, purchase, redeem, store_purchases

RTDN = "/payments/google/rtdn"


class GooglePlay:
    """The gateway configured for Google Play, and the stand-in Google behind it."""

    def __init__(self, api: Api, fake: FakeGooglePlay) -> None:
        self.api = api
        self.fake = fake

    @property
    def services(self) -> Any:
        return self.api.client._transport.app.state.services  # type: ignore[attr-defined]

    async def redeem(self, account_id: str, token: str, product_id: str = "pack_500") -> Any:
        return await redeem(
            self.api, account_id, store="GOOGLE_PLAY", purchaseToken=token, productId=product_id
        )

    async def push(
        self,
        notification: dict[str, Any],
        *,
        token: str | None = None,
        message_id: str | None = None,
    ) -> Any:
        body = self.fake.push(notification, message_id=message_id)
        headers = {"Authorization": f"Bearer {token or self.fake.oidc_token()}"}
        return await self.api.client.post(RTDN, content=body, headers=headers)


def google_settings(tmp_path: Path, fake: FakeGooglePlay, **changes: Any) -> dict[str, Any]:
    return {
        "google_play_package_name": PACKAGE,
        "google_play_service_account_file": fake.key_file(tmp_path),
        "google_play_api_base": fake.base + "/",
        "google_play_rtdn_audience": AUDIENCE,
        "google_play_rtdn_service_account": PUSHER,
        "google_play_certs_url": fake.certs_url,
        **changes,
    }


@pytest.fixture
def fake_google() -> Any:
    fake = FakeGooglePlay().start()
    yield fake
    fake.stop()


@pytest.fixture
async def google(make_api: ApiFactory, tmp_path: Path, fake_google: FakeGooglePlay) -> GooglePlay:
    return GooglePlay(await make_api(**google_settings(tmp_path, fake_google)), fake_google)


async def test_a_purchase_is_credited_then_consumed_once(google: GooglePlay, rows: Rows) -> None:
    # given a subscriber who bought pack_500 with obfuscatedAccountId set to their id
    account_id = await google.api.subscribed_account()
    token = google.fake.buy(account_id)
    # when the app sends the token, and sends it again
    first = await google.redeem(account_id, token)
    again = await google.redeem(account_id, token)
    # then the pack is credited once, and consumed at Google once, after the commit
    assert first["__typename"] == "PackPurchased", first
    assert (first["purchase"]["provider"], first["account"]["packBalance"]) == ("GOOGLE_PLAY", 500)
    assert again["purchase"]["id"] == first["purchase"]["id"]
    assert google.fake.consumed(token)
    assert len(google.fake.calls(":consume")) == 1
    (row,) = await store_purchases(rows)
    assert row["payment_reference"] == token and row["store_finished_at"] is not None
    assert len(await grants(rows, account_id)) == 1
    # the service account's key was exchanged for an access token at the key file's token_uri
    assert google.fake.calls("/token") and google.fake.access_tokens


async def test_a_quantity_above_one_credits_that_many_packs(google: GooglePlay, rows: Rows) -> None:
    account_id = await google.api.subscribed_account()
    token = google.fake.buy(account_id, "pack_1500", quantity=2)
    result = await google.redeem(account_id, token, "pack_1500")
    assert (result["purchase"]["credits"], result["purchase"]["priceCents"]) == (3000, 5000)
    assert result["account"]["packBalance"] == 3000


async def test_without_a_subscription_nothing_is_credited_or_consumed(
    google: GooglePlay, rows: Rows
) -> None:
    account_id = await google.api.create_account()
    token = google.fake.buy(account_id)
    result = await google.redeem(account_id, token)
    assert result["__typename"] == "SubscriptionRequired"
    # unconsumed and unacknowledged, Google refunds it after three days
    assert not google.fake.consumed(token) and google.fake.calls(":consume") == []
    assert await store_purchases(rows) == []


async def test_another_accounts_obfuscated_account_id_is_refused(
    google: GooglePlay, rows: Rows
) -> None:
    buyer = await google.api.subscribed_account()
    other = await google.api.subscribed_account()
    for token in (google.fake.buy(buyer), google.fake.buy(None)):
        result = await google.redeem(other, token)
        assert (result["__typename"], result["reason"]) == ("StorePurchaseInvalid", "WRONG_ACCOUNT")
        assert not google.fake.consumed(token)
    assert await store_purchases(rows) == []


async def test_a_token_redeemed_by_one_account_is_refused_to_another(
    google: GooglePlay, rows: Rows
) -> None:
    buyer = await google.api.subscribed_account()
    other = await google.api.subscribed_account()
    token = google.fake.buy(buyer)
    assert (await google.redeem(buyer, token))["__typename"] == "PackPurchased"
    assert (await google.redeem(other, token))["__typename"] == "StorePurchaseAlreadyRedeemed"
    assert (await google.api.balances(other))["packBalance"] == 0


async def test_one_token_sent_at_once_by_its_owner_and_another_account_grants_once(
    google: GooglePlay, rows: Rows
) -> None:
    buyer = await google.api.subscribed_account()
    other = await google.api.subscribed_account()
    token = google.fake.buy(buyer)
    answers = await asyncio.gather(
        *(google.redeem(who, token) for who in (buyer, other, buyer, other))
    )
    assert [a["__typename"] for a in answers[0::2]] == ["PackPurchased"] * 2
    assert {a["__typename"] for a in answers[1::2]} <= {
        "StorePurchaseInvalid",
        "StorePurchaseAlreadyRedeemed",
    }
    assert len(await grants(rows, buyer)) == 1 and await grants(rows, other) == []
    assert len(google.fake.calls(":consume")) >= 1 and google.fake.consumed(token)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unknown token", "NOT_FOUND"),
        ("another product", "NOT_FOUND"),
        ("pending", "NOT_PURCHASED"),
        ("cancelled", "NOT_PURCHASED"),
        ("consumed elsewhere", "ALREADY_CONSUMED"),
        ("no product id", "MISSING_PROOF"),
    ],
)
async def test_a_purchase_google_does_not_vouch_for_is_refused(
    google: GooglePlay, rows: Rows, case: str, reason: str
) -> None:
    account_id = await google.api.subscribed_account()
    token = google.fake.buy(account_id, state={"pending": 2, "cancelled": 1}.get(case, 0))
    if case == "consumed elsewhere":
        google.fake.purchases[token]["consumptionState"] = 1
    proof: dict[str, Any] = {
        "store": "GOOGLE_PLAY",
        "purchaseToken": token,
        "productId": "pack_500",
    }
    if case == "unknown token":
        proof["purchaseToken"] = "not-a-token"
    if case == "another product":
        proof["productId"] = "pack_4000"
    if case == "no product id":
        del proof["productId"]
    result = await redeem(google.api, account_id, **proof)
    assert (result["__typename"], result["reason"]) == ("StorePurchaseInvalid", reason)
    assert await store_purchases(rows) == []
    assert google.fake.calls(":consume") == []


async def test_test_purchases_are_refused_where_they_are_not_accepted(
    make_api: ApiFactory, tmp_path: Path, fake_google: FakeGooglePlay, rows: Rows
) -> None:
    api = await make_api(**google_settings(tmp_path, fake_google, google_play_test_purchases=False))
    store = GooglePlay(api, fake_google)
    account_id = await api.subscribed_account()
    token = fake_google.buy(account_id, test_purchase=True)
    result = await store.redeem(account_id, token)
    assert (result["__typename"], result["reason"]) == ("StorePurchaseInvalid", "WRONG_ENVIRONMENT")


async def test_google_down_is_provider_unavailable_and_a_retry_credits(
    google: GooglePlay, rows: Rows
) -> None:
    account_id = await google.api.subscribed_account()
    token = google.fake.buy(account_id)
    google.fake.fail_next(503)
    assert (await google.redeem(account_id, token))["__typename"] == "PaymentProviderUnavailable"
    assert await store_purchases(rows) == []
    assert (await google.redeem(account_id, token))["__typename"] == "PackPurchased"


async def test_a_consume_that_fails_after_the_grant_is_finished_by_the_sweep(
    google: GooglePlay, rows: Rows
) -> None:
    account_id = await google.api.subscribed_account()
    token = google.fake.buy(account_id)
    # the products.get succeeds, the consume after the commit fails
    google.fake.fail_next_consume(500)
    result = await google.redeem(account_id, token)
    # the credits are committed; the purchase waits to be consumed
    assert result["__typename"] == "PackPurchased"
    assert not google.fake.consumed(token)
    (row,) = await store_purchases(rows)
    assert row["store_finished_at"] is None
    # when the sweep runs, it consumes it (and credits nothing more)
    assert await reconcile_stores(google.services) >= 1
    assert google.fake.consumed(token)
    (row,) = await store_purchases(rows)
    assert row["store_finished_at"] is not None
    assert len(await grants(rows, account_id)) == 1


# -- voided purchases: refunds and chargebacks -------------------------------------------------


async def _spend(api: Api, account_id: str, runs: int) -> None:
    for n in range(runs):
        assert (await api.run(account_id, "ULTRA", key=f"run-{n}"))["__typename"] == "GeneratorRun"


async def test_a_voided_purchase_after_partial_spend_is_revoked_by_the_sweep(
    google: GooglePlay, rows: Rows, clock: FrozenClock
) -> None:
    account_id = await google.api.subscribed_account()
    token = google.fake.buy(account_id)
    purchase_id = (await google.redeem(account_id, token))["purchase"]["id"]
    await _spend(google.api, account_id, 13)
    google.fake.void(token, at=clock.now() + timedelta(hours=1))
    # when the sweep pulls the voided purchases, twice
    assert await reconcile_stores(google.services) == 1
    google.services.store_sweep.pulled_at.clear()
    assert await reconcile_stores(google.services) == 0
    # then what is left of the pack is revoked, once
    bought = await purchase(google.api, purchase_id)
    assert (bought["status"], bought["revokedCredits"], bought["revocationTarget"]) == (
        "REFUNDED",
        460,
        500,
    )
    revocations = [e for e in await rows.ledger(account_id) if e["kind"] == "REVOCATION"]
    assert [e["amount"] for e in revocations] == [-460]
    assert (await run_audit(google.services)).findings == []


async def test_a_quantity_based_partial_refund_revokes_its_share(
    google: GooglePlay, rows: Rows, clock: FrozenClock
) -> None:
    account_id = await google.api.subscribed_account()
    token = google.fake.buy(account_id, quantity=4)
    purchase_id = (await google.redeem(account_id, token))["purchase"]["id"]
    google.fake.void(token, quantity=1, at=clock.now() + timedelta(hours=1))
    await reconcile_stores(google.services)
    bought = await purchase(google.api, purchase_id)
    assert (bought["status"], bought["revokedCredits"], bought["refundedCents"]) == (
        "FULFILLED",
        500,
        1000,
    )
    assert (await google.api.balances(account_id))["packBalance"] == 1500


async def test_the_sweep_pulls_voided_purchases_once_per_interval(
    google: GooglePlay, clock: FrozenClock
) -> None:
    await reconcile_stores(google.services)
    await reconcile_stores(google.services)
    assert len(google.fake.calls("/voidedpurchases")) == 1
    clock.advance(timedelta(hours=1))
    await reconcile_stores(google.services)
    assert len(google.fake.calls("/voidedpurchases")) == 2


# -- Real-time Developer Notifications ----------------------------------------------------------


async def test_a_voided_notification_revokes_at_once_and_a_redelivery_does_nothing(
    google: GooglePlay, rows: Rows, clock: FrozenClock
) -> None:
    account_id = await google.api.subscribed_account()
    token = google.fake.buy(account_id)
    purchase_id = (await google.redeem(account_id, token))["purchase"]["id"]
    google.fake.void(token, at=clock.now())
    notice = {
        "voidedPurchaseNotification": {
            "purchaseToken": token,
            "orderId": "x",
            "productType": 2,
            "refundType": 1,
        }
    }
    first = await google.push(notice, message_id="m-1")
    again = await google.push(notice, message_id="m-1")
    assert (first.status_code, first.json()["outcome"]) == (200, "refunded")
    assert again.json()["outcome"] == "duplicate"
    assert (await purchase(google.api, purchase_id))["status"] == "REFUNDED"
    # Google's signing certificates were read once for both pushes
    assert len(google.fake.calls("/oauth2/v1/certs")) == 1
    # the sweep pulling the same voided purchase later changes nothing either
    assert await reconcile_stores(google.services) == 0
    assert len([e for e in await rows.ledger(account_id) if e["kind"] == "REVOCATION"]) == 1


async def test_a_purchase_notification_credits_a_purchase_the_app_never_sent(
    google: GooglePlay, rows: Rows
) -> None:
    account_id = await google.api.subscribed_account()
    token = google.fake.buy(account_id)
    notice = {
        "oneTimeProductNotification": {
            "version": "1.0",
            "notificationType": 1,
            "purchaseToken": token,
            "sku": "pack_500",
        }
    }
    response = await google.push(notice)
    assert response.json()["outcome"] == "fulfilled"
    assert google.fake.consumed(token)
    assert (await google.api.balances(account_id))["packBalance"] == 500
    # the app's own redeem afterwards returns that purchase
    assert (await google.redeem(account_id, token))["__typename"] == "PackPurchased"
    assert len(await grants(rows, account_id)) == 1


async def test_a_purchase_notification_without_a_subscription_consumes_nothing(
    google: GooglePlay, rows: Rows
) -> None:
    account_id = await google.api.create_account()
    token = google.fake.buy(account_id)
    notice = {
        "oneTimeProductNotification": {
            "notificationType": 1,
            "purchaseToken": token,
            "sku": "pack_500",
        }
    }
    response = await google.push(notice)
    assert (response.status_code, response.json()["outcome"]) == (200, "subscription_required")
    assert not google.fake.consumed(token)


@pytest.mark.parametrize(
    "forgery",
    ["no token", "another key", "another audience", "another pusher", "expired", "another issuer"],
)
async def test_a_push_without_a_valid_oidc_token_is_400_and_writes_nothing(
    google: GooglePlay, rows: Rows, forgery: str
) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    account_id = await google.api.subscribed_account()
    token = google.fake.buy(account_id)
    notice = {
        "oneTimeProductNotification": {
            "notificationType": 1,
            "purchaseToken": token,
            "sku": "pack_500",
        }
    }
    tokens = {
        "another key": lambda: google.fake.oidc_token(
            key=rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ),
        "another audience": lambda: google.fake.oidc_token(audience="https://elsewhere.example"),
        "another pusher": lambda: google.fake.oidc_token(email="someone@example.com"),
        "expired": lambda: google.fake.oidc_token(expires_in=-3600),
        "another issuer": lambda: google.fake.oidc_token(issuer="https://evil.example"),
    }
    body = google.fake.push(notice)
    headers = {} if forgery == "no token" else {"Authorization": f"Bearer {tokens[forgery]()}"}
    response = await google.api.client.post(RTDN, content=body, headers=headers)
    assert response.status_code == 400
    assert await rows.count("payment_events") == 0
    assert await store_purchases(rows) == []


async def test_a_notification_for_another_package_is_acknowledged_and_ignored(
    google: GooglePlay, rows: Rows
) -> None:
    response = await google.push({"packageName": "com.other.app", "testNotification": {}})
    assert (response.status_code, response.json()["outcome"]) == (200, "ignored")


async def test_a_consume_google_refuses_as_such_is_not_retried_forever(
    google: GooglePlay, rows: Rows
) -> None:
    account_id = await google.api.subscribed_account()
    token = google.fake.buy(account_id)
    google.fake.fail_next_consume(400)
    assert (await google.redeem(account_id, token))["__typename"] == "PackPurchased"
    (row,) = await store_purchases(rows)
    assert row["store_finished_at"] is not None
    await reconcile_stores(google.services)
    assert len(google.fake.calls(":consume")) == 1
