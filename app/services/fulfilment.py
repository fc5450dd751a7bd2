"""One fulfilment for every path: the webhook, the client's confirm, the reconciliation.

It re-reads the payment from the provider (an event body is never trusted alone), asks the
domain what the payment means for the purchase, and writes that under the account lock
with a compare-and-set on the status, so however often or concurrently it is called, a
payment grants its pack once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from app.domain.accounts import AccountView
from app.domain.aggregate import AccountState, PurchaseChange, WritePlan, plan_settlement
from app.domain.errors import PurchaseNotFound
from app.domain.events import PurchaseStatusChanged
from app.domain.purchases import (
    PurchaseStatus,
    ReportedPayment,
    Sale,
    Settlement,
    SettlementDecision,
)
from app.domain.records import PackPurchase
from app.payments.port import Payment, ProviderUnavailable
from app.persistence.tables import PackPurchaseRow
from app.persistence.unit_of_work import UnitOfWork
from app.services.accounts import get_account
from app.services.deps import Services
from app.services.mapping import purchase_of, view_of_books
from app.services.webhook_events import plan_events

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
    purchase, account = purchase_of(row), None
    session_id = row.checkout_session_id or session_hint
    if row.status == PurchaseStatus.PENDING and session_id is not None:
        payment = await services.payments.fetch_payment(session_id)
        if row.checkout_session_id is None and payment.purchase_id != row.id:
            log.warning("checkout %s does not belong to purchase %s", session_id, row.id)
        else:
            purchase, account = await settle_payment(purchase_id, payment, services)
    if purchase.status == PurchaseStatus.REFUND_PENDING:
        purchase, account = await refund_undeliverable(purchase_id, services), None
    return await outcome(purchase, services, account)


async def settle_payment(
    purchase_id: str, payment: Payment, services: Services
) -> tuple[PackPurchase, AccountView | None]:
    """Write down what ``payment`` means for a PENDING purchase, at most once; the purchase
    as it stands afterwards, and its account as this settlement left it (None: unchanged).

    On PostgreSQL five round trips: BEGIN, the account locked, the state read with the
    purchase locked, the plan written with the purchase's new status, COMMIT.
    """
    # The driver lane on PostgreSQL: this transaction touches the account's state only.
    async with services.db.writing(lane=True) as uow:
        account = await uow.lock_owner_of_purchase(purchase_id)
        if account is None:
            raise PurchaseNotFound(purchase_id)
        settling = await uow.settling_state(account, purchase_id)
        if settling.purchase.status != PurchaseStatus.PENDING:
            return settling.purchase, None  # another call settled it first
        settled = await settle_locked(
            uow,
            settling.state,
            settling.purchase,
            payment,
            services,
            pack_on_sale=settling.pack_on_sale,
        )
        if settled is None:
            return settling.purchase, None
        await uow.commit()
    return settled.purchase, view_of_books(account, settling.state, settled.plan)


@dataclass(frozen=True, slots=True)
class Settled:
    """A settlement written (not yet committed): the decision, its plan, the purchase after."""

    decision: SettlementDecision
    plan: WritePlan
    purchase: PackPurchase


async def settle_locked(
    uow: UnitOfWork,
    state: AccountState,
    purchase: PackPurchase,
    payment: Payment,
    services: Services,
    *,
    pack_on_sale: bool,
) -> Settled | None:
    """Settle a PENDING purchase whose account (then row) is locked in ``uow``, read in
    ``state``; the caller commits. None: nothing to write yet (the payment is not final).

    Every path that credits a pack comes through here: a card payment confirmed (above) and
    a store purchase redeemed (``store_purchases``), so the grant, its lot and its expiry
    are one rule.
    """
    decision, plan = plan_settlement(
        state,
        Sale(purchase.id, purchase.credits, purchase.price_cents, purchase.currency),
        ReportedPayment(payment.state, payment.purchase_id, payment.amount_cents, payment.currency),
        services.clock.now(),
        pack_on_sale=pack_on_sale,
    )
    if decision.settlement is Settlement.WAIT:
        return None
    status = SETTLED_AS[decision.settlement]
    change = PurchaseChange(
        purchase.id, status, decision.reason, payment.session_id, payment.payment_reference
    )
    plan = replace(
        plan,
        purchase_change=change,
        events=(
            *plan.events,
            PurchaseStatusChanged(purchase.id, purchase.provider.value, status.value),
        ),
    )
    # The purchase's compare-and-set from PENDING is part of the plan's write: a status
    # moved meanwhile makes the write raise, so nothing commits.
    await uow.write(plan, await plan_events(uow, services, state, plan))
    granted = plan.granted_lot()
    after = replace(
        purchase,
        status=status,
        status_reason=decision.reason,
        checkout_url=None,
        purchased_at=plan.now if granted else purchase.purchased_at,
        expires_at=granted.expires_at if granted else purchase.expires_at,
    )
    if decision.mismatch:
        log.error(
            "purchase %s: payment %s does not match the sale: %s",
            purchase.id,
            payment.session_id,
            decision.reason,
        )
    return Settled(decision, plan, after)


async def refund_undeliverable(purchase_id: str, services: Services) -> PackPurchase:
    """Paid but not deliverable: refund through the provider, keyed by the purchase."""
    from app.services.reversals import apply_reversal

    async with services.db.reading() as uow:
        row = await uow.purchases.get(purchase_id)
    assert row is not None
    if row.payment_reference is None:
        log.error("purchase %s needs a refund but names no payment", row.id)
        return purchase_of(row)
    try:
        reversal = await services.payments.refund(row.payment_reference, purchase_id=row.id)
    except ProviderUnavailable:
        log.warning("refund of purchase %s failed; the reconciliation retries it", row.id)
        return purchase_of(row)
    await apply_reversal(reversal, services)
    async with services.db.reading() as uow:
        refreshed = await uow.purchases.get(row.id)
    assert refreshed is not None
    return purchase_of(refreshed)


async def outcome_of(row: PackPurchaseRow, services: Services) -> PurchaseOutcome:
    return await outcome(purchase_of(row), services)


async def outcome(
    purchase: PackPurchase, services: Services, account: AccountView | None = None
) -> PurchaseOutcome:
    """How the purchase stands; ``account``: as the write that credited it left it."""
    if purchase.status is PurchaseStatus.PENDING:
        return PaymentPending(purchase, purchase.checkout_url)
    if purchase.status is PurchaseStatus.FULFILLED:
        return PackPurchased(purchase, account or await get_account(purchase.account_id, services))
    return PurchaseClosed(purchase)


__all__ = ["PackPurchased", "PaymentPending", "PurchaseClosed"]
