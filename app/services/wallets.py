"""The only code that changes a balance: every change goes through :class:`Postings`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from app.clock import Clock
from app.domain.aggregate import AccountState, Book
from app.domain.errors import AccountNotFound
from app.domain.events import AccountChanged, CreditsPosted
from app.domain.model import Bucket, LedgerKind, ReferenceType, Tool
from app.domain.spending import PackLot
from app.domain.wallet import Renewal, acting_instant
from app.domain.webhooks import Balances, Entry
from app.persistence.tables import (
    AccountRow,
    CreditAdjustmentRow,
    LedgerEntryRow,
    PackPurchaseRow,
    SubscriptionRow,
)
from app.persistence.unit_of_work import UnitOfWork
from app.services.mapping import bonus_lot_of, lot_of, terms_of, wallet_of


class Postings:
    """Applies signed amounts to an account's buckets, one immutable ledger row each."""

    def __init__(self, uow: UnitOfWork, account: AccountRow, now: datetime) -> None:
        self._uow = uow
        self._account = account
        self._now = now
        # What the outgoing webhooks judge a write by: the balances before it, its entries.
        self.before = Balances(
            account.subscription_balance, account.pack_balance, account.bonus_balance
        )
        self.entries: list[Entry] = []
        self.rows: list[LedgerEntryRow] = []

    @property
    def account_id(self) -> str:
        return self._account.id

    @property
    def now(self) -> datetime:
        return self._now

    def post(
        self,
        kind: LedgerKind,
        bucket: Bucket,
        amount: int,
        *,
        reference_type: ReferenceType | str,
        reference_id: str | None,
        lot: PackPurchaseRow | CreditAdjustmentRow | None = None,
        occurred_at: datetime | None = None,
        tool: Tool | None = None,
    ) -> None:
        """``tool`` labels the credits counters for spends and refunds of a generation."""
        account = self._account
        if bucket is Bucket.SUBSCRIPTION:
            account.subscription_balance += amount
            after = account.subscription_balance
        else:
            if lot is None:
                raise ValueError("a pack or bonus posting names its lot")
            lot.remaining += amount
            if bucket is Bucket.PACK:
                account.pack_balance += amount
                after = account.pack_balance
            else:
                account.bonus_balance += amount
                after = account.bonus_balance
            if lot.remaining < 0:
                raise ValueError("a lot cannot go below zero")
        if after < 0:
            raise ValueError("a bucket cannot go below zero")
        row = LedgerEntryRow(
            account_id=account.id,
            kind=kind.value,
            bucket=bucket.value,
            amount=amount,
            balance_after=after,
            reference_type=str(reference_type),
            reference_id=reference_id,
            lot_id=lot.id if lot else None,
            occurred_at=occurred_at or self._now,
            recorded_at=self._now,
        )
        self._uow.ledger.add(row)
        self.rows.append(row)
        self.entries.append(
            Entry(
                len(self.entries),
                kind,
                bucket,
                amount,
                after,
                str(reference_type),
                reference_id,
                row.lot_id,
                row.occurred_at,
            )
        )
        self._uow.publish(CreditsPosted(kind, bucket, amount, tool))


async def lock_account(uow: UnitOfWork, account_id: str) -> AccountRow:
    account = await uow.accounts.lock(account_id)
    if account is None:
        raise AccountNotFound(account_id)
    # Whoever locks an account may change it; subscribers hear of it only if this commits.
    uow.publish(AccountChanged(account_id))
    return account


async def current_subscription(uow: UnitOfWork, account: AccountRow) -> SubscriptionRow | None:
    if account.subscription_id is None:
        return None
    return await uow.subscriptions.get(account.subscription_id)


async def acting_now(
    uow: UnitOfWork, account: AccountRow, clock: Clock
) -> tuple[SubscriptionRow | None, datetime]:
    """The locked account's subscription and the instant the write acts at.

    Call only with ``account`` locked: the clock is read now, after the lock, and the reading
    is never earlier than what the account recorded (see :func:`acting_instant`).
    """
    subscription = await current_subscription(uow, account)
    return subscription, acting_instant(clock.now(), wallet_of(account), terms_of(subscription))


async def bring_up_to_date(
    uow: UnitOfWork,
    account: AccountRow,
    subscription: SubscriptionRow | None,
    postings: Postings,
    now: datetime,
) -> None:
    """Write down every renewal and bonus expiry that fell due since the account was last
    written.

    They are the aggregate's (:meth:`Book.bring_up_to_date`); this applies them to the rows
    of the use cases that still write through the ORM.
    """
    bonus = (
        await uow.adjustments.bonus_with_credits_left(account.id) if account.bonus_balance else []
    )
    renewal_due = account.cycle_ends_at is not None and account.cycle_ends_at <= now
    if not renewal_due and not any(_expired(row, now) for row in bonus):
        return
    lots = await uow.purchases.with_credits_left(account.id) if account.pack_balance else []
    book = Book.open(_state_of(account, subscription, lots, bonus), now)
    book.bring_up_to_date()
    _apply(book, postings, [*lots, *bonus])
    account.cycle_index, account.cycle_ends_at = book.cycle_index, book.cycle_ends_at
    if subscription is not None and book.renewed_at is not None:
        record_plan_change(subscription, book.renewed_at)


def _expired(row: CreditAdjustmentRow, now: datetime) -> bool:
    return row.expires_at is not None and row.expires_at <= now


async def bonus_lots_of(uow: UnitOfWork, account: AccountRow) -> list[PackLot]:
    """The locked account's bonus lots with credits left, for the view a write answers."""
    if not account.bonus_balance:
        return []
    return [bonus_lot_of(row) for row in await uow.adjustments.bonus_with_credits_left(account.id)]


def record_plan_change(subscription: SubscriptionRow, renewed_at: datetime) -> None:
    """A scheduled downgrade becomes the plan once the renewal it waited for is recorded."""
    terms = terms_of(subscription)
    change = terms.change_due(renewed_at) if terms else None
    if change is None:
        return
    subscription.plan = change.plan.value
    subscription.monthly_credits = change.monthly_credits
    subscription.scheduled_plan = subscription.scheduled_credits = None
    subscription.scheduled_from = None


async def replace_cycle(
    uow: UnitOfWork,
    account: AccountRow,
    subscription: SubscriptionRow,
    postings: Postings,
    renewal: Renewal,
) -> None:
    """Starting a plan is a renewal that replaces the cycle (:meth:`Book.replace_cycle`)."""
    # Lots not yet past their date, even those fully spent or held: their date moves too.
    lots = await uow.purchases.unexpired(account.id, renewal.at)
    book = Book.open(_state_of(account, subscription, lots), renewal.at)
    book.replace_cycle(renewal, subscription.id)
    _apply(book, postings, lots)


def _state_of(
    account: AccountRow,
    subscription: SubscriptionRow | None,
    lots: list[PackPurchaseRow],
    bonus: list[CreditAdjustmentRow] | None = None,
) -> AccountState:
    return AccountState(
        account.id,
        subscription.id if subscription else None,
        wallet_of(account),
        terms_of(subscription),
        tuple(lot_of(row) for row in lots),
        bonus_lots=tuple(bonus_lot_of(row) for row in bonus or []),
    )


def _apply(
    book: Book, postings: Postings, lots: Sequence[PackPurchaseRow | CreditAdjustmentRow]
) -> None:
    rows = {row.id: row for row in lots}
    for posting in book.postings:
        postings.post(
            posting.kind,
            posting.bucket,
            posting.amount,
            reference_type=posting.reference_type,
            reference_id=posting.reference_id,
            lot=rows[posting.lot_id] if posting.lot_id else None,
            occurred_at=posting.occurred_at,
            tool=posting.tool,
        )
    for change in book.lot_changes():
        rows[change.lot_id].expires_at = change.expires_at
