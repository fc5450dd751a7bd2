"""The only code that changes a balance: every change goes through :class:`Postings`."""

from __future__ import annotations

from datetime import datetime

from app.clock import Clock
from app.domain.errors import AccountNotFound
from app.domain.events import AccountChanged, CreditsPosted
from app.domain.model import Bucket, LedgerKind, Tool
from app.domain.wallet import Renewal, acting_instant, renewals_due
from app.persistence.tables import AccountRow, LedgerEntryRow, PackPurchaseRow, SubscriptionRow
from app.persistence.unit_of_work import UnitOfWork
from app.services.mapping import terms_of, wallet_of


class Postings:
    """Applies signed amounts to an account's buckets, one immutable ledger row each."""

    def __init__(self, uow: UnitOfWork, account: AccountRow, now: datetime) -> None:
        self._uow = uow
        self._account = account
        self._now = now

    def post(
        self,
        kind: LedgerKind,
        bucket: Bucket,
        amount: int,
        *,
        reference_type: str,
        reference_id: str | None,
        lot: PackPurchaseRow | None = None,
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
                raise ValueError("a pack posting names its lot")
            lot.remaining += amount
            account.pack_balance += amount
            after = account.pack_balance
            if lot.remaining < 0:
                raise ValueError("a pack lot cannot go below zero")
        if after < 0:
            raise ValueError("a bucket cannot go below zero")
        self._uow.ledger.add(
            LedgerEntryRow(
                account_id=account.id,
                kind=kind.value,
                bucket=bucket.value,
                amount=amount,
                balance_after=after,
                reference_type=reference_type,
                reference_id=reference_id,
                lot_id=lot.id if lot else None,
                occurred_at=occurred_at or self._now,
                recorded_at=self._now,
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
    """Write down every renewal that fell due since the account was last written."""
    renewals, wallet = renewals_due(wallet_of(account), terms_of(subscription), now)
    for renewal in renewals:
        await record_renewal(
            uow,
            account,
            postings,
            renewal,
            reference_type="RENEWAL",
            reference_id=subscription.id if subscription else None,
        )
    account.cycle_index = wallet.cycle_index
    account.cycle_ends_at = wallet.cycle_ends_at
    if subscription is not None and renewals:
        record_plan_change(subscription, renewals[-1].at)


def record_plan_change(subscription: SubscriptionRow, renewed_at: datetime) -> None:
    """A scheduled downgrade becomes the plan once the renewal it waited for is recorded."""
    terms = terms_of(subscription)
    if terms is None or terms.scheduled is None or renewed_at < terms.scheduled.from_at:
        return
    subscription.plan = terms.scheduled.plan.value
    subscription.monthly_credits = terms.scheduled.monthly_credits
    subscription.scheduled_plan = subscription.scheduled_credits = None
    subscription.scheduled_from = None


async def record_renewal(
    uow: UnitOfWork,
    account: AccountRow,
    postings: Postings,
    renewal: Renewal,
    *,
    reference_type: str,
    reference_id: str | None,
    all_lots: bool = False,
) -> None:
    """A renewal in the ledger: what expired, then what the new cycle grants."""
    if renewal.expired_subscription:
        postings.post(
            LedgerKind.EXPIRY,
            Bucket.SUBSCRIPTION,
            -renewal.expired_subscription,
            reference_type=reference_type,
            reference_id=reference_id,
            occurred_at=renewal.at,
        )
    if renewal.expired_packs:
        await expire_packs(uow, account, postings, renewal.at, all_lots=all_lots)
    if renewal.granted:
        postings.post(
            LedgerKind.GRANT,
            Bucket.SUBSCRIPTION,
            renewal.granted,
            reference_type=reference_type,
            reference_id=reference_id,
            occurred_at=renewal.at,
        )


async def expire_packs(
    uow: UnitOfWork,
    account: AccountRow,
    postings: Postings,
    at: datetime,
    *,
    all_lots: bool = False,
) -> None:
    """Expire the lots due at ``at``; ``all_lots`` when a new subscription replaces the cycle.

    A replaced cycle's lots expire at ``at`` even if it is before their date, and their date
    moves there, so credits a failed run gives back later expire too instead of reviving.
    """
    lots = (
        await uow.purchases.unexpired(account.id, at)
        if all_lots
        else await uow.purchases.with_credits_left(account.id)
    )
    for lot in lots:
        if lot.expires_at is None:  # never credited: nothing to expire
            continue
        if not (all_lots or lot.expires_at <= at):
            continue
        lot.expires_at = min(lot.expires_at, at)
        if lot.remaining:
            postings.post(
                LedgerKind.EXPIRY,
                Bucket.PACK,
                -lot.remaining,
                reference_type="PURCHASE",
                reference_id=lot.id,
                lot=lot,
                occurred_at=at,
            )
