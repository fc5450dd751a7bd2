"""The App Store behind the store port, with Apple's ``app-store-server-library``.

The app sends the JWS of a StoreKit 2 transaction (``Transaction.jwsRepresentation``);
Apple posts App Store Server Notifications V2 (``{"signedPayload": "<JWS>"}``). Both are
verified by the library's ``SignedDataVerifier``: the ``x5c`` chain up to the configured
Apple roots (with Apple's marker extensions and, when online checks are on, OCSP), the
ES256 signature, then the bundle id, the app's Apple id and the environment. Nothing of a
JWS is read before that.

Errors are mapped here, once:

    StorePurchaseInvalid  (domain)  a proof that does not verify: reason INVALID_SIGNATURE,
                                    WRONG_APP or WRONG_ENVIRONMENT
    ProviderUnavailable             an OCSP responder could not be reached (retryable)
    InvalidWebhook                  a notification that does not verify (HTTP 400)
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from appstoreserverlibrary.models.Environment import Environment
from appstoreserverlibrary.models.JWSTransactionDecodedPayload import (
    JWSTransactionDecodedPayload,
)
from appstoreserverlibrary.models.NotificationTypeV2 import NotificationTypeV2
from appstoreserverlibrary.signed_data_verifier import (
    SignedDataVerifier,
    VerificationException,
    VerificationStatus,
)

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

# Environments whose data Apple does not sign: the library skips verification for them.
UNSIGNED_ENVIRONMENTS = frozenset({"LOCAL_TESTING", "XCODE"})
PROBLEM_OF_STATUS = {
    VerificationStatus.INVALID_APP_IDENTIFIER: StoreProblem.WRONG_APP,
    VerificationStatus.INVALID_ENVIRONMENT: StoreProblem.WRONG_ENVIRONMENT,
}
MESSAGES = {
    StoreProblem.INVALID_SIGNATURE: "The transaction is not signed by the App Store.",
    StoreProblem.WRONG_APP: "The transaction belongs to another app.",
    StoreProblem.WRONG_ENVIRONMENT: "The transaction is from another App Store environment.",
}
NOTICE_KINDS = {
    NotificationTypeV2.REFUND: NoticeKind.REFUNDED,
    NotificationTypeV2.REFUND_REVERSED: NoticeKind.REFUND_REVERSED,
    # A consumable bought: credited here too, should the app never send it.
    NotificationTypeV2.ONE_TIME_CHARGE: NoticeKind.PURCHASED,
}


def _instant(millis: int | None) -> datetime | None:
    return datetime.fromtimestamp(millis / 1000, tz=UTC) if millis is not None else None


def _transaction(decoded: JWSTransactionDecodedPayload) -> StoreTransaction:
    if not decoded.transactionId or not decoded.productId:
        raise StorePurchaseInvalid(
            StoreProblem.INVALID_SIGNATURE, "The transaction has no transactionId or productId."
        )
    return StoreTransaction(
        store=Store.APP_STORE,
        transaction_id=decoded.transactionId,
        product_id=decoded.productId,
        quantity=decoded.quantity if decoded.quantity is not None else 1,
        account_token=decoded.appAccountToken,
        state=StoreState.REVOKED if decoded.revocationDate is not None else StoreState.PURCHASED,
        purchased_at=_instant(decoded.purchaseDate),
        order_id=decoded.originalTransactionId,
        revocation_per_100000=decoded.revocationPercentage,
    )


class AppStoreProvider:
    """Verifies StoreKit 2 transactions and App Store Server Notifications V2."""

    name = ProviderName.APP_STORE

    def __init__(
        self,
        *,
        root_certificates: Sequence[bytes],
        bundle_id: str,
        app_apple_id: int | None,
        environment: str,
        online_checks: bool,
    ) -> None:
        self._verifier = SignedDataVerifier(
            list(root_certificates),
            online_checks,
            Environment(_env(environment)),
            bundle_id,
            app_apple_id,
        )

    async def verify_purchase(self, proof: StoreProof) -> StoreTransaction:
        if not proof.signed_transaction:
            raise StorePurchaseInvalid(
                StoreProblem.MISSING_PROOF, "An App Store purchase needs signedTransaction."
            )
        signed = proof.signed_transaction
        decoded = await self._verified(self._verifier.verify_and_decode_signed_transaction, signed)
        return _transaction(decoded)

    async def _verified(self, verify: Any, signed: str) -> Any:
        # The verifier is synchronous and may call OCSP responders: off the event loop.
        try:
            return await asyncio.to_thread(verify, signed)
        except VerificationException as exc:
            if exc.status is VerificationStatus.RETRYABLE_VERIFICATION_FAILURE:
                raise ProviderUnavailable("An App Store OCSP responder is unreachable") from exc
            problem = PROBLEM_OF_STATUS.get(exc.status, StoreProblem.INVALID_SIGNATURE)
            log.warning("App Store data refused: %s (%s)", exc.status.name, exc.__cause__)
            raise StorePurchaseInvalid(problem, MESSAGES[problem]) from exc

    async def finish(self, transaction: StoreTransaction) -> None:
        """Nothing to tell Apple: the app finishes the transaction on the device."""

    async def verify_notification(self, body: bytes, headers: Mapping[str, str]) -> StoreNotice:
        try:
            signed = json.loads(body)["signedPayload"]
            if not isinstance(signed, str):
                raise TypeError("signedPayload is not a string")
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidWebhook(f"The body is not an App Store notification: {exc}") from exc
        try:
            decoded = await self._verified(self._verifier.verify_and_decode_notification, signed)
        except StorePurchaseInvalid as exc:
            raise InvalidWebhook(f"The notification does not verify: {exc.reason}") from exc
        if not decoded.notificationUUID or decoded.signedDate is None:
            raise InvalidWebhook("The notification has no notificationUUID or signedDate.")
        reported_at = _instant(decoded.signedDate)
        assert reported_at is not None
        event_type = decoded.rawNotificationType or "UNKNOWN"
        kind = NOTICE_KINDS.get(decoded.notificationType, NoticeKind.IGNORED)
        signed_transaction = decoded.data.signedTransactionInfo if decoded.data else None
        if kind is NoticeKind.IGNORED or not signed_transaction:
            return StoreNotice(
                decoded.notificationUUID, event_type, NoticeKind.IGNORED, reported_at
            )
        try:
            transaction = _transaction(
                await self._verified(
                    self._verifier.verify_and_decode_signed_transaction, signed_transaction
                )
            )
        except StorePurchaseInvalid as exc:
            raise InvalidWebhook(f"The notification's transaction: {exc.reason}") from exc
        return StoreNotice(
            decoded.notificationUUID,
            event_type,
            kind,
            reported_at,
            transaction=transaction,
            product_id=transaction.product_id,
        )

    async def voided_since(self, since: datetime) -> list[VoidedPurchase]:
        """Apple tells of refunds by notification only."""
        return []

    async def aclose(self) -> None:
        """No connections are kept."""


def _env(environment: str) -> str:
    """Settings spell environments in capitals (SANDBOX); the library as Apple does."""
    return {
        "PRODUCTION": Environment.PRODUCTION.value,
        "SANDBOX": Environment.SANDBOX.value,
        "XCODE": Environment.XCODE.value,
        "LOCAL_TESTING": Environment.LOCAL_TESTING.value,
    }[environment]
