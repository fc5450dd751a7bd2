"""A pack purchase's life: paid for first, credited once, reversed in proportion.

PENDING ──paid & deliverable──▶ FULFILLED ──full refund──▶ REFUNDED
   │                               │ └─dispute opened──▶ DISPUTED ──won──▶ FULFILLED
   │                               │                             └─lost──▶ REVOKED
   ├──paid, not deliverable──▶ REFUND_PENDING ──refund confirmed──▶ REFUNDED
   ├──payment failed──▶ FAILED
   └──checkout expired──▶ EXPIRED

Everything here is pure: the services load the purchase and the payment as the provider
reports it, ask these functions what follows, and write that down.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class PurchaseStatus(enum.StrEnum):
    PENDING = "PENDING"
    FULFILLED = "FULFILLED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"
    REFUND_PENDING = "REFUND_PENDING"
    REFUNDED = "REFUNDED"
    DISPUTED = "DISPUTED"
    REVOKED = "REVOKED"


class ProviderName(enum.StrEnum):
    SANDBOX = "SANDBOX"
    STRIPE = "STRIPE"
    APP_STORE = "APP_STORE"
    GOOGLE_PLAY = "GOOGLE_PLAY"


class PaymentState(enum.StrEnum):
    OPEN = "OPEN"  # the customer has not paid yet
    PAID = "PAID"  # the money is captured
    FAILED = "FAILED"  # an asynchronous payment method failed
    EXPIRED = "EXPIRED"  # the checkout closed unpaid


@dataclass(frozen=True, slots=True)
class Sale:
    """What the purchase sold, as copied from the catalog when it was created."""

    purchase_id: str
    credits: int
    amount_cents: int
    currency: str


@dataclass(frozen=True, slots=True)
class ReportedPayment:
    """How the provider reports the payment: its state and what it says was paid for."""

    state: PaymentState
    purchase_id: str | None
    amount_cents: int | None
    currency: str | None


class Settlement(enum.StrEnum):
    WAIT = "WAIT"  # not paid yet: stay PENDING
    GRANT = "GRANT"  # paid and deliverable: credit the pack
    REFUND = "REFUND"  # paid but not deliverable: give the money back
    FAIL = "FAIL"
    EXPIRE = "EXPIRE"


@dataclass(frozen=True, slots=True)
class SettlementDecision:
    settlement: Settlement
    # Why a paid purchase is refunded instead of granted; ``mismatch`` is worth an alarm.
    reason: str | None = None
    mismatch: bool = False


def settle(
    sale: Sale, payment: ReportedPayment, *, subscription_active: bool, pack_on_sale: bool
) -> SettlementDecision:
    """What a PENDING purchase becomes given the payment the provider reports."""
    if payment.state is PaymentState.OPEN:
        return SettlementDecision(Settlement.WAIT)
    if payment.state is PaymentState.FAILED:
        return SettlementDecision(Settlement.FAIL, "The payment failed.")
    if payment.state is PaymentState.EXPIRED:
        return SettlementDecision(Settlement.EXPIRE, "The checkout expired unpaid.")
    if payment.purchase_id != sale.purchase_id:
        return SettlementDecision(Settlement.REFUND, "The payment names another purchase.", True)
    if payment.amount_cents != sale.amount_cents or (payment.currency or "").upper() != (
        sale.currency.upper()
    ):
        return SettlementDecision(
            Settlement.REFUND,
            f"Paid {payment.amount_cents} {payment.currency}; the pack costs "
            f"{sale.amount_cents} {sale.currency}.",
            True,
        )
    if not subscription_active:
        return SettlementDecision(
            Settlement.REFUND, "The subscription ended before the payment was confirmed."
        )
    if not pack_on_sale:
        return SettlementDecision(Settlement.REFUND, "The pack is no longer on sale.")
    return SettlementDecision(Settlement.GRANT)


def credits_for_refund(sale: Sale, refunded_cents: int) -> int:
    """The credits that ``refunded_cents`` of the price stand for, rounded up.

    Rounded up so a refund never leaves credits that were paid back with the money; a full
    refund stands for every credit of the pack.
    """
    if sale.amount_cents <= 0:
        return sale.credits
    refunded = max(0, min(refunded_cents, sale.amount_cents))
    return -(-sale.credits * refunded // sale.amount_cents)


@dataclass(frozen=True, slots=True)
class Revocation:
    """How many credits a reversal takes now, and how many it should have taken."""

    take: int
    target: int

    @property
    def short(self) -> int:
        """Credits already spent when the reversal came: owed, but never below zero."""
        return self.target - self.take


def revoke(*, target: int, already_revoked_target: int, remaining: int) -> Revocation:
    """Take what the reversal adds to the target, at most what the pack still holds."""
    wanted = max(0, target - already_revoked_target)
    return Revocation(take=min(wanted, max(0, remaining)), target=wanted)
