"""Pack purchases made in the App Store or Google Play: what a verified proof is worth.

The store takes the money and signs (Apple) or reports (Google) the transaction; the app
hands us the proof. Once the adapter has verified it, these rules decide whether it may be
credited to this account, and for how much:

    judge_transaction   the proof's problem for this account, or None
    store_sale          the credits and list price of ``quantity`` packs
    refunded_share      the money a store refund stands for, as a share of the list price

Everything here is pure; the services load, verify and write.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Store(enum.StrEnum):
    """The app stores; the same names as the purchase's provider."""

    APP_STORE = "APP_STORE"
    GOOGLE_PLAY = "GOOGLE_PLAY"


class StoreProblem(enum.StrEnum):
    """Why a proof is refused (``StorePurchaseInvalid.reason``)."""

    MISSING_PROOF = "MISSING_PROOF"  # the store's field is absent (signedTransaction, ...)
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"  # this gateway does not sell through that store
    INVALID_SIGNATURE = "INVALID_SIGNATURE"  # not signed by the store, or not parseable
    WRONG_APP = "WRONG_APP"  # another bundle id / package name
    WRONG_ENVIRONMENT = "WRONG_ENVIRONMENT"  # sandbox proof on production, or the reverse
    WRONG_ACCOUNT = "WRONG_ACCOUNT"  # appAccountToken / obfuscatedExternalAccountId differ
    WRONG_PRODUCT = "WRONG_PRODUCT"  # the proof is for another product than the input says
    NOT_PURCHASED = "NOT_PURCHASED"  # pending, cancelled or refunded at the store
    ALREADY_CONSUMED = "ALREADY_CONSUMED"  # consumed at the store, yet unknown here
    NOT_FOUND = "NOT_FOUND"  # the store knows no such purchase


class StoreState(enum.StrEnum):
    PURCHASED = "PURCHASED"
    PENDING = "PENDING"  # Google: a deferred payment not completed yet
    CANCELED = "CANCELED"
    REVOKED = "REVOKED"  # Apple: refunded (revocationDate set)


@dataclass(frozen=True, slots=True)
class StoreTransaction:
    """A store transaction as the store vouches for it (signature or API answer checked)."""

    store: Store
    # The idempotency key: Apple's transactionId, Google's purchaseToken.
    transaction_id: str
    product_id: str
    quantity: int
    # appAccountToken (Apple) or obfuscatedExternalAccountId (Google), as the app set it.
    account_token: str | None
    state: StoreState
    purchased_at: datetime | None
    order_id: str | None = None
    # Google: consumed at the store already (we consume only after crediting).
    consumed: bool = False
    # Apple: a refund's share in thousandths of a percent (revocationPercentage), if partial.
    revocation_per_100000: int | None = None


def judge_transaction(
    transaction: StoreTransaction, account_id: str, *, product_id: str | None
) -> StoreProblem | None:
    """What stops ``transaction`` being credited to ``account_id``, if anything.

    The account token is compared case-insensitively: Apple hands appAccountToken back as a
    UUID string, which StoreKit may have lower- or upper-cased.
    """
    token = (transaction.account_token or "").strip().lower()
    if token != account_id.strip().lower():
        return StoreProblem.WRONG_ACCOUNT
    if product_id is not None and product_id != transaction.product_id:
        return StoreProblem.WRONG_PRODUCT
    if transaction.state is not StoreState.PURCHASED:
        return StoreProblem.NOT_PURCHASED
    if transaction.quantity < 1:
        return StoreProblem.NOT_PURCHASED
    if transaction.consumed:
        # We consume only after crediting: consumed yet unknown here was never ours to grant.
        return StoreProblem.ALREADY_CONSUMED
    return None


@dataclass(frozen=True, slots=True)
class StoreSale:
    credits: int
    price_cents: int
    currency: str


def store_sale(pack_credits: int, pack_price_cents: int, currency: str, quantity: int) -> StoreSale:
    """``quantity`` packs at the catalog's list price.

    The store charges in the buyer's storefront currency at its own price tiers and keeps
    its commission; the purchase records the catalog's price so that refunds are
    proportioned on one scale whatever the storefront.
    """
    return StoreSale(pack_credits * quantity, pack_price_cents * quantity, currency)


def refunded_share(
    price_cents: int, *, quantity: int, voided_quantity: int | None = None, per_100000: int | None
) -> int:
    """The list price a store refund stands for, rounded up.

    Google reports a quantity-based partial refund as ``voidedQuantity`` units of the
    purchase's ``quantity``; Apple a prorated refund as ``revocationPercentage`` in
    thousandths of a percent. Without either the refund is whole.
    """
    if voided_quantity is not None and quantity > 0 and 0 < voided_quantity < quantity:
        return -(-price_cents * voided_quantity // quantity)
    if per_100000 is not None and 0 <= per_100000 < 100_000:
        return -(-price_cents * per_100000 // 100_000)
    return price_cents
