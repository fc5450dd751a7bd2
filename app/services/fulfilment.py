"""One fulfilment for every path: the webhook, the client's confirm, the reconciliation.

It re-reads the payment from the provider (an event body is never trusted alone), asks the
domain what the payment means for the purchase, and writes that under the account lock
with a compare-and-set on the status, so however often or concurrently it is called, a
payment grants its pack once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.domain.accounts import AccountView
from app.domain.aggregate import plan_settlement
from app.domain.errors import AccountNotFound, PurchaseNotFound
from app.domain.events import PurchaseStatusChanged
from app.domain.purchases import (
    PurchaseStatus,
    ReportedPayment,
    Settlement,
    SettlementDecision,
)
from app.domain.records import PackPurchase
from app.payments.port import Payment, ProviderUnavailable
from app.persistence.plans import LockedAccount
from app.persistence.tables import PackPurchaseRow
from app.persistence.unit_of_work import UnitOfWork
from app.services.accounts import get_account
from app.services.deps import Services
from app.services.mapping import purchase_of, sale_of

log = logging.getLogger("creditgate.payments")

SETTLED_AS = {
    Settlement.GRANT: PurchaseStatus.FULFILLED,
    Settlement.REFUND: PurchaseStatus.REFUND_PENDING,
    Settlement.FAIL: PurchaseStatus.FAILED,
    Settlement.EXPIRE: PurchaseStatus.EXPIRED,
}


@dataclass(frozen=True, slots=True)
class PackPurchased:
    """Paid and credited."""

    purchase: PackPurchase
    account: AccountView


@dataclass(frozen=True, slots=True)
class PaymentPending:
    """Waiting for the payment: send the user to ``checkout_url``, then confirm."""

    purchase: PackPurchase
    checkout_url: str | None


@dataclass(frozen=True, slots=True)
class PurchaseClosed:
    """The purchase ended without credits (failed, expired, refunded) or lost them."""

    purchase: PackPurchase


PurchaseOutcome = PackPurchased | PaymentPending | PurchaseClosed


async def fulfil_purchase(
    purchase_id: str, services: Services, *, session_hint: str | None = None
) -> PurchaseOutcome:
    """Bring a purchase up to date with its payment; returns how it stands afterwards.

    ``session_hint``: the checkout a verified webhook named, for a purchase whose checkout
    was opened but not yet noted (the process died in between).
    """
    async with services.db.reading() as uow:
        row = await uow.purchases.get(purchase_id)
    if row is None:
        raise PurchaseNotFound(purchase_id)
    session_id = row.checkout_session_id or session_hint
    if row.status == PurchaseStatus.PENDING and session_id is not None:
        payment = await services.payments.fetch_payment(session_id)
        if row.checkout_session_id is None and payment.purchase_id != row.id:
            log.warning("checkout %s does not belong to purchase %s", session_id, row.id)
        else:
            row = await settle_payment(purchase_id, payment, services)
    if row.status == PurchaseStatus.REFUND_PENDING:
        row = await refund_undeliverable(row, services)
    return await outcome_of(row, services)


async def settle_payment(purchase_id: str, payment: Payment, services: Services) -> PackPurchaseRow:
    """Write down what ``payment`` means for a PENDING purchase, at most once."""
    async with services.db.writing() as uow:
        found = await uow.purchases.get(purchase_id)
        assert found is not None
        account = await uow.lock_account(found.account_id)
        if account is None:
            raise AccountNotFound(found.account_id)
        row = await uow.purchases.lock(purchase_id)
        assert row is not None
        if row.status != PurchaseStatus.PENDING:
            return row  # another call settled it first
        decision = await settle_locked(uow, account, row, payment, services)
        if decision.settlement is Settlement.WAIT:
            return row
        await uow.commit()
    return row


async def settle_locked(
    uow: UnitOfWork,
    account: LockedAccount,
    row: PackPurchaseRow,
    payment: Payment,
    services: Services,
) -> SettlementDecision:
    """Settle a PENDING purchase whose account is locked in ``uow``; the caller commits.

    Every path that credits a pack comes through here: a card payment confirmed (above) and
    a store purchase redeemed (``store_purchases``), so the grant, its lot and its expiry
    are one rule.
    """
    state = await uow.account_state(account)
    pack = await uow.catalog.pack(row.pack_id)
    decision, plan = plan_settlement(
        state,
        sale_of(row),
        ReportedPayment(payment.state, payment.purchase_id, payment.amount_cents, payment.currency),
        services.clock.now(),
        pack_on_sale=pack is not None and pack.on_sale,
    )
    if decision.settlement is Settlement.WAIT:
        return decision
    status = SETTLED_AS[decision.settlement]
    if not await uow.purchases.move(row.id, PurchaseStatus.PENDING, status):
        return SettlementDecision(Settlement.WAIT)
    await uow.write(plan)
    row.status, row.status_reason = status.value, decision.reason
    if row.checkout_session_id is None:
        row.checkout_session_id = payment.session_id
    row.payment_reference = payment.payment_reference
    for lot in plan.lots:
        if lot.lot_id == row.id:  # granted: the plan made the purchase a lot
            row.purchased_at = row.fulfilled_at = plan.now
            row.expires_at, row.remaining = lot.expires_at, lot.remaining
    if decision.mismatch:
        log.error(
            "purchase %s: payment %s does not match the sale: %s",
            row.id,
            payment.session_id,
            decision.reason,
        )
    uow.publish(PurchaseStatusChanged(row.id, row.provider, row.status))
    return decision


async def refund_undeliverable(row: PackPurchaseRow, services: Services) -> PackPurchaseRow:
    """Paid but not deliverable: refund through the provider, keyed by the purchase."""
    from app.services.reversals import apply_reversal

    if row.payment_reference is None:
        log.error("purchase %s needs a refund but names no payment", row.id)
        return row
    try:
        reversal = await services.payments.refund(row.payment_reference, purchase_id=row.id)
    except ProviderUnavailable:
        log.warning("refund of purchase %s failed; the reconciliation retries it", row.id)
        return row
    await apply_reversal(reversal, services)
    async with services.db.reading() as uow:
        refreshed = await uow.purchases.get(row.id)
    assert refreshed is not None
    return refreshed


async def outcome_of(row: PackPurchaseRow, services: Services) -> PurchaseOutcome:
    purchase = purchase_of(row)
    if purchase.status is PurchaseStatus.PENDING:
        return PaymentPending(purchase, row.checkout_url)
    if purchase.status is PurchaseStatus.FULFILLED:
        return PackPurchased(purchase, await get_account(row.account_id, services))
    return PurchaseClosed(purchase)


__all__ = ["PackPurchased", "PaymentPending", "PurchaseClosed"]
