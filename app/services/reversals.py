"""Refunds and disputes: money the provider took back takes the pack's credits with it.

Packs are not refundable by policy, but a provider can still reverse a payment. Each
reversal applies once, keyed by the provider's refund or dispute id, and revokes credits
in proportion to the money (``app.domain.purchases``): what is left of the pack is taken,
what was already spent is recorded on the purchase as short of the target. A dispute won
gives back what it took; a dispute lost is final.
"""

from __future__ import annotations

import logging
from datetime import datetime

from app.domain.events import PurchaseStatusChanged
from app.domain.holds import lot_is_live
from app.domain.model import Bucket, LedgerKind
from app.domain.purchases import ProviderName, PurchaseStatus, credits_for_refund, revoke
from app.payments.port import DisputeState, Reversal, ReversalKind
from app.persistence.tables import AccountRow, PackPurchaseRow, PurchaseReversalRow
from app.persistence.unit_of_work import UnitOfWork
from app.services.deps import Services
from app.services.fulfilment import fulfil_purchase
from app.services.mapping import recorded_cycle_of, sale_of
from app.services.wallets import Postings, acting_now, bring_up_to_date, lock_account

log = logging.getLogger("creditgate.payments")

# A refund's record: applied (its credits taken), or reversed by the store (given back).
APPLIED = "APPLIED"
REVERSED = "REVERSED"


async def apply_reversal(
    reversal: Reversal, services: Services, *, provider: ProviderName | None = None
) -> str:
    """Apply one refund or dispute state; returns what happened, for logs and metrics.

    ``provider``: whose payment it is; the card provider unless a store's is named.
    """
    card = provider is None or provider == services.payments.name
    provider_name = (provider or services.payments.name).value
    async with services.db.reading() as uow:
        found = await uow.purchases.by_payment(provider_name, reversal.payment_reference)
    if found is None and not card:
        # A store purchase exists here only once redeemed: a refund of one never redeemed
        # has nothing to take back.
        log.warning("%s %s names no purchase of ours", reversal.kind, reversal.reversal_id)
        return "unknown_purchase"
    if found is None:
        # Events come in any order: a reversal of a payment not yet heard of settles the
        # payment first (found through its checkout), then reverses it.
        session_id = await services.payments.checkout_of_payment(reversal.payment_reference)
        async with services.db.reading() as uow:
            found = (
                await uow.purchases.by_session(provider_name, session_id) if session_id else None
            )
        if found is None:
            log.warning("%s %s names no purchase of ours", reversal.kind, reversal.reversal_id)
            return "unknown_purchase"
        await fulfil_purchase(found.id, services, session_hint=session_id)
    async with services.db.writing() as uow:
        account = await lock_account(uow, found.account_id)
        subscription, now = await acting_now(uow, account, services.clock)
        row = await uow.purchases.lock(found.id)
        assert row is not None
        existing = await uow.reversals.get(provider_name, reversal.reversal_id)
        postings = Postings(uow, account, now)
        await bring_up_to_date(uow, account, subscription, postings, now)
        before = row.status
        if reversal.kind is ReversalKind.REFUND:
            outcome = _refund(uow, row, reversal, existing, postings, now)
        elif reversal.kind is ReversalKind.REFUND_REVERSAL:
            outcome = _refund_reversed(uow, row, account, reversal, existing, postings, now)
        else:
            outcome = _dispute(uow, row, account, reversal, existing, postings, now)
        if outcome in ("duplicate", "nothing"):
            return outcome
        if row.status != before:
            uow.publish(PurchaseStatusChanged(row.id, row.provider, row.status))
        await uow.commit()
    return outcome


def _refund(
    uow: UnitOfWork,
    row: PackPurchaseRow,
    reversal: Reversal,
    existing: PurchaseReversalRow | None,
    postings: Postings,
    now: datetime,
) -> str:
    if existing is not None and not _later(reversal, existing, state=REVERSED):
        return "duplicate"
    sale = sale_of(row)
    refunded_before = row.refunded_cents
    row.refunded_cents = min(row.price_cents, refunded_before + reversal.amount_cents)
    target = take = 0
    if row.fulfilled_at is not None:
        # What the money stands for, less what a dispute already took back for it.
        target = min(
            credits_for_refund(sale, row.refunded_cents)
            - credits_for_refund(sale, refunded_before),
            row.credits - row.revocation_target,
        )
        take = _take(row, target, postings, reversal)
    elif row.status == PurchaseStatus.REFUND_PENDING:
        row.status = PurchaseStatus.REFUNDED.value
    if existing is not None:  # refunded again after the store had reversed the refund
        existing.state, existing.amount_cents = APPLIED, reversal.amount_cents
        existing.credits_target, existing.credits_revoked = target, take
        existing.closed_at, existing.reported_at = now, reversal.reported_at
    else:
        uow.reversals.add(
            PurchaseReversalRow(
                provider=row.provider,
                reversal_id=reversal.reversal_id,
                purchase_id=row.id,
                kind=ReversalKind.REFUND.value,
                amount_cents=reversal.amount_cents,
                state=APPLIED,
                credits_target=target,
                credits_revoked=take,
                created_at=now,
                closed_at=now,
                reported_at=reversal.reported_at,
            )
        )
    fully_refunded = row.fulfilled_at is not None and row.refunded_cents >= row.price_cents
    if fully_refunded and row.status in (PurchaseStatus.FULFILLED, PurchaseStatus.DISPUTED):
        row.status = PurchaseStatus.REFUNDED.value
    return "refunded"


def _later(reversal: Reversal, existing: PurchaseReversalRow, *, state: str) -> bool:
    """Whether ``reversal`` is a later report than the ``state`` recorded (stores only)."""
    return (
        existing.state == state
        and reversal.reported_at is not None
        and existing.reported_at is not None
        and reversal.reported_at > existing.reported_at
    )


def _refund_reversed(
    uow: UnitOfWork,
    row: PackPurchaseRow,
    account: AccountRow,
    reversal: Reversal,
    existing: PurchaseReversalRow | None,
    postings: Postings,
    now: datetime,
) -> str:
    """The store took its refund back: what the refund revoked comes back to the pack.

    Reported before the refund itself (notifications come in any order), it is recorded
    with nothing to give back, and the older refund report then finds a later state.
    """
    if existing is None:
        uow.reversals.add(
            PurchaseReversalRow(
                provider=row.provider,
                reversal_id=reversal.reversal_id,
                purchase_id=row.id,
                kind=ReversalKind.REFUND.value,
                amount_cents=0,
                state=REVERSED,
                credits_target=0,
                credits_revoked=0,
                created_at=now,
                closed_at=now,
                reported_at=reversal.reported_at,
            )
        )
        return "refund_reversed"
    if existing.state != APPLIED or (
        reversal.reported_at is not None
        and existing.reported_at is not None
        and reversal.reported_at <= existing.reported_at
    ):
        return "duplicate"
    row.refunded_cents = max(0, row.refunded_cents - existing.amount_cents)
    _give_back(row, account, existing, postings)
    existing.state, existing.amount_cents = REVERSED, 0
    existing.credits_target = existing.credits_revoked = 0
    existing.closed_at, existing.reported_at = now, reversal.reported_at
    if row.fulfilled_at is not None and row.status == PurchaseStatus.REFUNDED:
        row.status = PurchaseStatus.FULFILLED.value
    return "refund_reversed"


def _dispute(
    uow: UnitOfWork,
    row: PackPurchaseRow,
    account: AccountRow,
    reversal: Reversal,
    existing: PurchaseReversalRow | None,
    postings: Postings,
    now: datetime,
) -> str:
    state = reversal.dispute_state or DisputeState.OPEN
    if existing is not None and existing.state != DisputeState.OPEN:
        return "duplicate"  # closed already: nothing more happens to it
    if existing is not None and state is DisputeState.OPEN:
        return "duplicate"
    if row.fulfilled_at is None:
        return "nothing"  # never credited: nothing to take or give back
    if existing is None:
        if state is DisputeState.WON:
            return "nothing"  # closed in our favour before we heard it open
        target = min(
            credits_for_refund(sale_of(row), reversal.amount_cents),
            row.credits - row.revocation_target,
        )
        take = _take(row, target, postings, reversal)
        existing = PurchaseReversalRow(
            provider=row.provider,
            reversal_id=reversal.reversal_id,
            purchase_id=row.id,
            kind=ReversalKind.DISPUTE.value,
            amount_cents=reversal.amount_cents,
            state=DisputeState.OPEN.value,
            credits_target=target,
            credits_revoked=take,
            created_at=now,
        )
        uow.reversals.add(existing)
        row.status = PurchaseStatus.DISPUTED.value
    if state is DisputeState.OPEN:
        return "disputed"
    existing.state, existing.closed_at = state.value, now
    if state is DisputeState.LOST:
        row.status = PurchaseStatus.REVOKED.value
        return "dispute_lost"
    if row.refunded_cents >= row.price_cents:
        # Refunded in full meanwhile: the money is gone either way, nothing comes back.
        row.status = PurchaseStatus.REFUNDED.value
        return "dispute_won"
    _give_back(row, account, existing, postings)
    row.status = PurchaseStatus.FULFILLED.value
    return "dispute_won"


def _take(row: PackPurchaseRow, target: int, postings: Postings, reversal: Reversal) -> int:
    """Revoke up to ``target`` credits from what the pack still holds; never below zero."""
    revocation = revoke(target=target, already_revoked_target=0, remaining=row.remaining)
    if revocation.take:
        postings.post(
            LedgerKind.REVOCATION,
            Bucket.PACK,
            -revocation.take,
            reference_type=reversal.kind.value,
            reference_id=reversal.reversal_id,
            lot=row,
        )
    row.revocation_target += revocation.target
    row.revoked_credits += revocation.take
    if revocation.short:
        log.warning(
            "purchase %s: %s %s revoked %d of %d credits; %d were already spent",
            row.id,
            reversal.kind,
            reversal.reversal_id,
            revocation.take,
            revocation.target,
            revocation.short,
        )
    return revocation.take


def _give_back(
    row: PackPurchaseRow, account: AccountRow, reversal: PurchaseReversalRow, postings: Postings
) -> None:
    """A dispute won, or a refund the store reversed: the credits it took come back to the
    pack, expiring when it does."""
    amount = reversal.credits_revoked
    row.revocation_target -= reversal.credits_target
    row.revoked_credits -= amount
    if not amount:
        return
    postings.post(
        LedgerKind.GRANT,
        Bucket.PACK,
        amount,
        reference_type=reversal.kind,
        reference_id=reversal.reversal_id,
        lot=row,
    )
    if row.expires_at is None or not lot_is_live(row.expires_at, recorded_cycle_of(account)):
        postings.post(
            LedgerKind.EXPIRY,
            Bucket.PACK,
            -amount,
            reference_type="PURCHASE",
            reference_id=row.id,
            lot=row,
        )
