"""Rows to domain values. Kept in one place so services and readers agree."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from app.domain.accounts import AccountView, account_view
from app.domain.aggregate import AccountState, WritePlan, bonus_lots_after
from app.domain.holds import RecordedCycle
from app.domain.model import BillingInterval, Bucket, LedgerKind, Plan
from app.domain.purchases import ProviderName, PurchaseStatus, Sale
from app.domain.records import CreditAdjustment, Generation, LedgerEntry, PackPurchase
from app.domain.spending import PackLot
from app.domain.subscriptions import ScheduledChange, SubscriptionTerms
from app.domain.wallet import Wallet
from app.persistence.plans import LockedAccount, generation_record
from app.persistence.tables import (
    AccountRow,
    CreditAdjustmentRow,
    GenerationRow,
    LedgerEntryRow,
    PackPurchaseRow,
    SubscriptionRow,
)


def terms_of(row: SubscriptionRow | None) -> SubscriptionTerms | None:
    if row is None:
        return None
    return SubscriptionTerms(
        plan=Plan(row.plan),
        interval=BillingInterval(row.interval),
        started_at=row.started_at,
        monthly_credits=row.monthly_credits,
        canceled_at=row.canceled_at,
        recorded_at=row.created_at,
        scheduled=(
            ScheduledChange(Plan(row.scheduled_plan), row.scheduled_credits, row.scheduled_from)
            if row.scheduled_plan and row.scheduled_credits is not None and row.scheduled_from
            else None
        ),
    )


def wallet_of(row: AccountRow) -> Wallet:
    return Wallet(
        row.subscription_balance,
        row.pack_balance,
        row.cycle_index,
        row.cycle_ends_at,
        row.bonus_balance,
    )


def view_of(
    row: AccountRow,
    subscription: SubscriptionRow | None,
    now: datetime,
    bonus_lots: Iterable[PackLot] = (),
) -> AccountView:
    return account_view(
        account_id=row.id,
        email=row.email,
        created_at=row.created_at,
        wallet=wallet_of(row),
        subscription_id=subscription.id if subscription else None,
        terms=terms_of(subscription),
        now=now,
        bonus_lots=bonus_lots,
    )


def view_of_books(account: LockedAccount, state: AccountState, plan: WritePlan) -> AccountView:
    """The account as a write plan leaves it (a replay: as it was), seen at its instant."""
    return account_view(
        account_id=account.id,
        email=account.email,
        created_at=account.created_at,
        wallet=state.wallet if plan.replay_of is not None else plan.wallet,
        subscription_id=state.subscription_id,
        terms=state.terms,
        now=plan.now,
        bonus_lots=bonus_lots_after(state, plan),
    )


def bonus_lot_of(row: CreditAdjustmentRow) -> PackLot:
    # Only a bonus (a positive adjustment) is a lot, and it always has an expiry.
    assert row.expires_at is not None
    return PackLot(row.id, row.remaining, row.expires_at, row.created_at)


def lot_of(row: PackPurchaseRow) -> PackLot:
    # Only credited purchases are lots: both instants are set when the pack is granted.
    assert row.expires_at is not None and row.purchased_at is not None
    return PackLot(row.id, row.remaining, row.expires_at, row.purchased_at)


def purchase_of(row: PackPurchaseRow) -> PackPurchase:
    pending = row.status == PurchaseStatus.PENDING
    return PackPurchase(
        id=row.id,
        account_id=row.account_id,
        pack_id=row.pack_id,
        credits=row.credits,
        price_cents=row.price_cents,
        currency=row.currency,
        status=PurchaseStatus(row.status),
        provider=ProviderName(row.provider),
        created_at=row.created_at,
        purchased_at=row.purchased_at,
        expires_at=row.expires_at,
        checkout_url=row.checkout_url if pending else None,
        status_reason=row.status_reason,
        refunded_cents=row.refunded_cents,
        revoked_credits=row.revoked_credits,
        revocation_target=row.revocation_target,
    )


def sale_of(row: PackPurchaseRow) -> Sale:
    return Sale(row.id, row.credits, row.price_cents, row.currency)


def generation_of(row: GenerationRow) -> Generation:
    return generation_record(row)


def ledger_entry_of(row: LedgerEntryRow) -> LedgerEntry:
    assert row.id is not None
    return LedgerEntry(
        id=row.id,
        account_id=row.account_id,
        kind=LedgerKind(row.kind),
        bucket=Bucket(row.bucket),
        amount=row.amount,
        balance_after=row.balance_after,
        reference_type=row.reference_type,
        reference_id=row.reference_id,
        occurred_at=row.occurred_at,
        reason=row.reason,
        actor=row.actor,
    )


def adjustment_of(row: CreditAdjustmentRow) -> CreditAdjustment:
    return CreditAdjustment(
        id=row.id,
        account_id=row.account_id,
        amount=row.amount,
        reason=row.reason,
        actor=row.actor,
        created_at=row.created_at,
        expires_at=row.expires_at,
        remaining=row.remaining,
    )


def recorded_cycle_of(row: AccountRow) -> RecordedCycle:
    """The cycle the locked account is recorded in: what refunds and expiries judge by."""
    return RecordedCycle(row.subscription_id, row.cycle_index, row.cycle_ends_at)
