"""Google Play behind the store port, with ``google-api-python-client`` and ``google-auth``.

A purchase is never taken on the app's word: its token is looked up with the Play
Developer API (``purchases.products.get``) under service-account credentials read from the
configured key file; it is consumed (``purchases.products.consume``) only after the credits
are committed, so a purchase that could not be credited is refunded by Google after three
days. Refunds and chargebacks are pulled from the Voided Purchases API. Real-time Developer
Notifications arrive as Pub/Sub pushes whose OIDC token is verified by ``google-auth``
against Google's certificates for the configured audience.

The client is synchronous (httplib2): each call runs in a thread with an HTTP connection
of its own. Errors are mapped here, once:

    StorePurchaseInvalid  (domain)  NOT_FOUND (no such token for this package and product),
                                    WRONG_ENVIRONMENT (a license tester's purchase where test
                                    purchases are refused)
    ProviderUnavailable             network errors, 5xx, 429, refused credentials
    InvalidWebhook                  a push without a valid token, or not a Pub/Sub message
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import google.auth.exceptions
import google_auth_httplib2
import httplib2
from google.auth.transport import requests as google_requests
from google.oauth2 import id_token, service_account
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from app.domain.errors import StorePurchaseInvalid
from app.domain.purchases import ProviderName
from app.domain.store_purchases import Store, StoreProblem, StoreState, StoreTransaction
from app.payments.port import (
    InvalidWebhook,
    NoticeKind,
    ProviderUnavailable,
    StoreNotice,
    StoreProof,
    VoidedPurchase,
)

log = logging.getLogger(__name__)

SCOPE = "https://www.googleapis.com/auth/androidpublisher"
GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
PURCHASE_STATES = {0: StoreState.PURCHASED, 1: StoreState.CANCELED, 2: StoreState.PENDING}
TEST_PURCHASE = 0  # purchaseType of a license tester's purchase
ONE_TIME_PURCHASED = 1  # oneTimeProductNotification.notificationType
VOIDED_PAGE = 1000
TIMEOUT_SECONDS = 10
CERTS_TTL_SECONDS = 300.0


def _instant(millis: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(millis) / 1000, tz=UTC)
    except (TypeError, ValueError):
        return None


class _CertificatesCache(google_requests.Request):
    """google-auth's transport, keeping the signing certificates a few minutes.

    ``id_token.verify_token`` reads the certificates on every call; Google rotates them
    over days, so one read per few minutes spares each push a round trip to Google.
    """

    def __init__(self, ttl_seconds: float = CERTS_TTL_SECONDS) -> None:
        super().__init__()
        self._ttl = ttl_seconds
        self._kept: dict[str, tuple[float, Any]] = {}

    def __call__(
        self,
        url: Any,
        method: Any = "GET",
        body: Any = None,
        headers: Any = None,
        timeout: Any = TIMEOUT_SECONDS,
        **kwargs: Any,
    ) -> Any:
        if method == "GET":
            kept = self._kept.get(url)
            if kept is not None and kept[0] > time.monotonic():
                return kept[1]
        response = super().__call__(url, method, body, headers, timeout, **kwargs)
        if method == "GET" and response.status == 200:
            response.data  # noqa: B018 - read the body now, while the connection is ours
            self._kept[url] = (time.monotonic() + self._ttl, response)
        return response


def _bearer(headers: Mapping[str, str]) -> str | None:
    for key, value in headers.items():
        if key.lower() == "authorization" and value.lower().startswith("bearer "):
            return value[7:].strip()
    return None


class GooglePlayProvider:
    """One-time products of one Android package, through the Play Developer API."""

    name = ProviderName.GOOGLE_PLAY

    def __init__(
        self,
        *,
        package_name: str,
        service_account_file: Path,
        api_base: str,
        rtdn_audience: str | None,
        rtdn_service_account: str | None,
        certs_url: str,
        accept_test_purchases: bool,
    ) -> None:
        self._package = package_name
        self._credentials = service_account.Credentials.from_service_account_file(
            str(service_account_file), scopes=[SCOPE]
        )
        self._service = build(
            "androidpublisher",
            "v3",
            http=self._http(),
            static_discovery=True,
            cache_discovery=False,
            client_options={"api_endpoint": api_base},
        )
        self._audience = rtdn_audience
        self._pusher = rtdn_service_account
        self._certs_url = certs_url
        self._accept_test = accept_test_purchases
        self._certs = _CertificatesCache()

    def _http(self) -> google_auth_httplib2.AuthorizedHttp:
        # httplib2 connections are not thread-safe: one per call.
        return google_auth_httplib2.AuthorizedHttp(
            self._credentials, http=httplib2.Http(timeout=TIMEOUT_SECONDS)
        )

    async def _execute(self, request: Any) -> Any:
        def run() -> Any:
            http = self._http()
            try:
                # No retries here: the app retries a redeem, Pub/Sub a push, the sweep a consume.
                return request.execute(http=http, num_retries=0)
            finally:
                http.close()

        try:
            return await asyncio.to_thread(run)
        except HttpError as exc:
            status = exc.resp.status
            if status in (400, 404, 410):
                raise
            if status in (401, 403):
                log.error("Google Play refused the service account: %s", exc)
            raise ProviderUnavailable(f"Google Play answered {status}") from exc
        except (google.auth.exceptions.GoogleAuthError, httplib2.HttpLib2Error, OSError) as exc:
            raise ProviderUnavailable(f"Google Play unreachable: {exc}") from exc

    async def fetch(self, product_id: str, token: str) -> StoreTransaction:
        """The purchase as Google has it now; NOT_FOUND if this package has no such token."""
        products = self._service.purchases().products()
        request = products.get(packageName=self._package, productId=product_id, token=token)
        try:
            found = await self._execute(request)
        except HttpError as exc:
            raise StorePurchaseInvalid(
                StoreProblem.NOT_FOUND, "Google Play knows no such purchase of this app."
            ) from exc
        if found.get("purchaseType") == TEST_PURCHASE and not self._accept_test:
            raise StorePurchaseInvalid(
                StoreProblem.WRONG_ENVIRONMENT, "Test purchases are not accepted here."
            )
        return StoreTransaction(
            store=Store.GOOGLE_PLAY,
            transaction_id=token,
            product_id=found.get("productId") or product_id,
            quantity=int(found.get("quantity") or 1),
            account_token=found.get("obfuscatedExternalAccountId"),
            state=PURCHASE_STATES.get(found.get("purchaseState"), StoreState.CANCELED),
            purchased_at=_instant(found.get("purchaseTimeMillis")),
            order_id=found.get("orderId"),
            consumed=found.get("consumptionState") == 1,
        )

    async def verify_purchase(self, proof: StoreProof) -> StoreTransaction:
        if not proof.purchase_token or not proof.product_id:
            raise StorePurchaseInvalid(
                StoreProblem.MISSING_PROOF,
                "A Google Play purchase needs purchaseToken and productId.",
            )
        return await self.fetch(proof.product_id, proof.purchase_token)

    async def finish(self, transaction: StoreTransaction) -> None:
        """Consume the purchase (which acknowledges it): the user may buy the product again."""
        products = self._service.purchases().products()
        request = products.consume(
            packageName=self._package,
            productId=transaction.product_id,
            token=transaction.transaction_id,
        )
        try:
            await self._execute(request)
        except HttpError as exc:
            # Refused as such (voided meanwhile, consumed already): asking again will not
            # change that, and the credits stand or go with the voided purchases.
            log.warning("Google Play refused to consume %s: %s", transaction.order_id, exc)

    async def verify_notification(self, body: bytes, headers: Mapping[str, str]) -> StoreNotice:
        """A Pub/Sub push: its OIDC token first, then the message it carries."""
        token = _bearer(headers)
        if token is None:
            raise InvalidWebhook("The push carries no Authorization bearer token.")
        if not self._audience:
            raise InvalidWebhook("No RTDN audience is configured: pushes are refused.")
        claims = await self._verified_token(token)
        try:
            envelope = json.loads(body)
            message = envelope["message"]
            message_id = str(message.get("messageId") or message["message_id"])
            data = json.loads(base64.b64decode(message["data"]))
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise InvalidWebhook(f"The push is not a Pub/Sub message: {exc}") from exc
        log.debug("RTDN %s pushed by %s", message_id, claims.get("email"))
        reported_at = _instant(data.get("eventTimeMillis")) or datetime.now(UTC)
        if data.get("packageName") != self._package:
            return StoreNotice(message_id, "otherPackage", NoticeKind.IGNORED, reported_at)
        one_time = data.get("oneTimeProductNotification")
        if isinstance(one_time, Mapping):
            kind = (
                NoticeKind.PURCHASED
                if one_time.get("notificationType") == ONE_TIME_PURCHASED
                else NoticeKind.IGNORED
            )
            return StoreNotice(
                message_id,
                f"oneTimeProductNotification:{one_time.get('notificationType')}",
                kind,
                reported_at,
                purchase_token=one_time.get("purchaseToken"),
                product_id=one_time.get("sku"),
            )
        voided = data.get("voidedPurchaseNotification")
        if isinstance(voided, Mapping):
            return StoreNotice(
                message_id,
                "voidedPurchaseNotification",
                NoticeKind.VOIDED,
                reported_at,
                purchase_token=voided.get("purchaseToken"),
            )
        kind_name = next((key for key in data if key.endswith("Notification")), "unknown")
        return StoreNotice(message_id, kind_name, NoticeKind.IGNORED, reported_at)

    async def _verified_token(self, token: str) -> Mapping[str, Any]:
        def verify() -> Mapping[str, Any]:
            claims: Mapping[str, Any] = id_token.verify_token(
                token, self._certs, audience=self._audience, certs_url=self._certs_url
            )
            return claims

        try:
            claims = await asyncio.to_thread(verify)
        except google.auth.exceptions.TransportError as exc:
            raise ProviderUnavailable(f"Google's certificates are unreachable: {exc}") from exc
        except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
            raise InvalidWebhook(f"The push token does not verify: {exc}") from exc
        except Exception as exc:  # PyJWT's errors for a JWK set, or a malformed token
            raise InvalidWebhook(f"The push token does not verify: {exc}") from exc
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise InvalidWebhook(f"The push token was issued by {claims.get('iss')!r}.")
        if self._pusher and (
            claims.get("email") != self._pusher or claims.get("email_verified") is not True
        ):
            raise InvalidWebhook(f"The push token is for {claims.get('email')!r}.")
        return claims

    async def voided_since(self, since: datetime) -> list[VoidedPurchase]:
        """Every one-time purchase voided since ``since`` (quantity-based partial refunds too)."""
        voided: list[VoidedPurchase] = []
        page_token: str | None = None
        while True:
            params: dict[str, Any] = {
                "packageName": self._package,
                "startTime": str(int(since.timestamp() * 1000)),
                "type": 0,
                "includeQuantityBasedPartialRefund": True,
                "maxResults": VOIDED_PAGE,
            }
            if page_token:
                params["token"] = page_token
            request = self._service.purchases().voidedpurchases().list(**params)
            try:
                page = await self._execute(request)
            except HttpError as exc:
                raise ProviderUnavailable(f"Google Play refused the voided list: {exc}") from exc
            for item in page.get("voidedPurchases") or []:
                voided_at = _instant(item.get("voidedTimeMillis"))
                if not item.get("purchaseToken") or voided_at is None:
                    continue
                quantity = item.get("voidedQuantity")
                voided.append(
                    VoidedPurchase(
                        purchase_token=item["purchaseToken"],
                        order_id=item.get("orderId"),
                        voided_at=voided_at,
                        voided_quantity=int(quantity) if quantity is not None else None,
                    )
                )
            page_token = (page.get("tokenPagination") or {}).get("nextPageToken")
            if not page_token:
                return voided

    async def aclose(self) -> None:
        """Connections are per call."""
