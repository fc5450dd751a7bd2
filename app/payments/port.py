"""The payment provider port, in the domain's words.

Services ask a provider to open a checkout, to tell them how a payment stands, to refund
it, and to verify a webhook; the official client library lives inside each adapter.

PaymentProvider          the protocol every card adapter implements
StoreProvider            the protocol of the app stores (App Store, Google Play)
InvalidWebhook           a webhook whose signature, age or body is not acceptable (HTTP 400)
ProviderUnavailable      the provider could not be reached or failed: try again (HTTP 5xx)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from app.domain.purchases import PaymentState, ProviderName
from app.domain.store_purchases import Store, StoreTransaction


class InvalidWebhook(Exception):
    """Refused at the edge: nothing is written, the sender gets HTTP 400."""


class ProviderUnavailable(Exception):
    """A transient failure talking to the provider; the caller retries later."""


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    """What we sell, copied from the catalog when the purchase was created."""

    purchase_id: str
    account_id: str
    pack_id: str
    credits: int
    amount_cents: int
    currency: str


@dataclass(frozen=True, slots=True)
class Payment:
    """How the provider says a checkout stands, re-read from the provider."""

    session_id: str
    state: PaymentState
    # The purchase the provider has on record for this payment (client_reference_id).
    purchase_id: str | None
    amount_cents: int | None
    currency: str | None
    # The provider's id of the captured payment (a Stripe PaymentIntent), once paid.
    payment_reference: str | None = None


@dataclass(frozen=True, slots=True)
class Checkout:
    session_id: str
    url: str | None
    # Set when the provider confirmed the payment at once (the sandbox does).
    payment: Payment | None = None


class ReversalKind(enum.StrEnum):
    REFUND = "REFUND"
    DISPUTE = "DISPUTE"
    # The store took a refund back (Apple's REFUND_REVERSED): what it revoked comes back.
    REFUND_REVERSAL = "REFUND_REVERSAL"


class DisputeState(enum.StrEnum):
    OPEN = "OPEN"
    WON = "WON"
    LOST = "LOST"


@dataclass(frozen=True, slots=True)
class Reversal:
    """Money the provider took back (a refund) or holds back (a dispute), by its own id."""

    kind: ReversalKind
    reversal_id: str
    payment_reference: str
    amount_cents: int
    # Disputes only; a refund is final once it exists.
    dispute_state: DisputeState | None = None
    # When the provider reported this state (a store's signedDate): of two reports about
    # one refund, the later one stands, whatever order they arrive in.
    reported_at: datetime | None = None


class EventKind(enum.StrEnum):
    PAYMENT = "PAYMENT"  # a checkout changed: re-read it with fetch_payment(session_id)
    REFUNDS = "REFUNDS"  # a payment was refunded: re-read with fetch_refunds(object_id)
    DISPUTE = "DISPUTE"  # a dispute opened or closed: re-read with fetch_dispute(object_id)
    IGNORED = "IGNORED"  # verified, but nothing we act on


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """A verified webhook: only its id and what to re-read are trusted, never its body."""

    event_id: str
    event_type: str
    kind: EventKind
    object_id: str | None = None
    # The purchase the event names, if it names one (client_reference_id or metadata).
    purchase_id: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


class PaymentProvider(Protocol):
    name: ProviderName

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        """Open a checkout for ``request``; the same purchase id always gives the same one."""
        ...

    async def fetch_payment(self, session_id: str) -> Payment: ...

    async def refund(self, payment_reference: str, *, purchase_id: str) -> Reversal:
        """Refund the whole payment; keyed by the purchase so a retry refunds once."""
        ...

    async def fetch_refunds(self, object_id: str) -> list[Reversal]:
        """Every refund of the payment a REFUNDS event named."""
        ...

    async def fetch_dispute(self, object_id: str) -> Reversal: ...

    async def checkout_of_payment(self, payment_reference: str) -> str | None:
        """The checkout that took a payment: for a reversal heard of before the payment."""
        ...

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        """Verify the raw body's signature before anything parses it; InvalidWebhook if not."""
        ...

    async def aclose(self) -> None:
        """Release connections; called once when the process stops."""
        ...


@dataclass(frozen=True, slots=True)
class StoreProof:
    """What the app sends: Apple's signed transaction, or Google's token and product."""

    store: Store
    signed_transaction: str | None = None
    purchase_token: str | None = None
    product_id: str | None = None


class NoticeKind(enum.StrEnum):
    PURCHASED = "PURCHASED"  # re-fetch the purchase: credit it if it is ours and unclaimed
    REFUNDED = "REFUNDED"  # the store refunded the transaction
    REFUND_REVERSED = "REFUND_REVERSED"  # the store took its refund back
    VOIDED = "VOIDED"  # Google: pull the voided purchases around ``reported_at``
    IGNORED = "IGNORED"  # verified, but nothing we act on (a test notification, ...)


@dataclass(frozen=True, slots=True)
class StoreNotice:
    """A verified store notification: its id (deduplication) and what it is about."""

    event_id: str
    event_type: str
    kind: NoticeKind
    reported_at: datetime
    # Apple: the transaction as signed in the notification; Google: fetched again.
    transaction: StoreTransaction | None = None
    purchase_token: str | None = None
    product_id: str | None = None


@dataclass(frozen=True, slots=True)
class VoidedPurchase:
    """A Google Play purchase refunded or charged back (the Voided Purchases API)."""

    purchase_token: str
    order_id: str | None
    voided_at: datetime
    # Units voided by a quantity-based partial refund; None: the whole purchase.
    voided_quantity: int | None


class StoreProvider(Protocol):
    """An app store: verifies proofs and notifications with the store's own library.

    ``verify_purchase`` raises ``StorePurchaseInvalid`` (a domain error with a reason) for a
    proof that is not acceptable and ``ProviderUnavailable`` when the store cannot be asked.
    """

    name: ProviderName

    async def verify_purchase(self, proof: StoreProof) -> StoreTransaction: ...

    async def finish(self, transaction: StoreTransaction) -> None:
        """Tell the store the purchase is delivered (Google: consume); after the commit."""
        ...

    async def verify_notification(self, body: bytes, headers: Mapping[str, str]) -> StoreNotice:
        """Verify a store notification before acting on it; InvalidWebhook if not."""
        ...

    async def voided_since(self, since: datetime) -> list[VoidedPurchase]:
        """Purchases the store voided since ``since`` (Apple: none, it notifies)."""
        ...

    async def aclose(self) -> None: ...
