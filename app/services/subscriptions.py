"""Starting and cancelling subscriptions (service token only)."""

from __future__ import annotations

import uuid
from datetime import datetime

from app.domain.accounts import AccountView
from app.domain.errors import InvalidInput, NoActiveSubscription, SubscriptionAlreadyActive
from app.domain.model import BillingInterval, Bucket, LedgerKind, Plan, SubscriptionStatus
from app.domain.subscriptions import SubscriptionTerms, change_plan, utc_anchor
from app.domain.wallet import start_cycle
from app.persistence.tables import SubscriptionRow
from app.services.deps import Services
from app.services.mapping import terms_of, view_of, wallet_of
from app.services.wallets import (
    Postings,
    acting_now,
    bonus_lots_of,
    bring_up_to_date,
    lock_account,
    replace_cycle,
)
from app.services.webhook_events import record_posted


async def start_subscription(
    account_id: str,
    plan: Plan,
    interval: BillingInterval,
    started_at: datetime | None,
    services: Services,
) -> AccountView:
    anchor = utc_anchor(started_at) if started_at is not None else None
    async with services.db.writing() as uow:
        account = await lock_account(uow, account_id)
        previous, now = await acting_now(uow, account, services.clock)
        started_at = anchor or now
        if started_at > now:
            raise InvalidInput("startedAt", "startedAt cannot be in the future.")
        postings = Postings(uow, account, now)
        await bring_up_to_date(uow, account, previous, postings, now)
        if previous is not None:
            old = terms_of(previous)
            assert old is not None
            if old.status_at(now) is SubscriptionStatus.ACTIVE:
                raise SubscriptionAlreadyActive()
            if previous.canceled_at and started_at < previous.canceled_at:
                raise InvalidInput(
                    "startedAt", "startedAt cannot precede the cancellation of the last plan."
                )
        terms = SubscriptionTerms(plan, interval, started_at, services.plans.allowance(plan))
        row = SubscriptionRow(
            id=str(uuid.uuid4()),
            account_id=account.id,
            plan=plan.value,
            interval=interval.value,
            monthly_credits=terms.monthly_credits,
            started_at=started_at,
            created_at=now,
        )
        uow.subscriptions.add(row)
        renewal, wallet = start_cycle(wallet_of(account), terms, now)
        # Starting a plan is a renewal: whatever the last one left expires, packs included.
        await replace_cycle(uow, account, row, postings, renewal)
        account.subscription_id = row.id
        account.cycle_index = wallet.cycle_index
        account.cycle_ends_at = wallet.cycle_ends_at
        await record_posted(uow, postings, row, services)
        bonus = await bonus_lots_of(uow, account)
        await uow.commit()
    return view_of(account, row, now, bonus)


async def cancel_subscription(account_id: str, services: Services) -> AccountView:
    """No new cycles after this one; what the account holds stays spendable until it ends."""
    async with services.db.writing() as uow:
        account = await lock_account(uow, account_id)
        # Judged at an instant no earlier than the account's cycle: a cancel that read the
        # clock before a renewal another request recorded cancels the new cycle, not the old.
        subscription, now = await acting_now(uow, account, services.clock)
        postings = Postings(uow, account, now)
        await bring_up_to_date(uow, account, subscription, postings, now)
        terms = terms_of(subscription)
        if (
            subscription is None
            or terms is None
            or terms.status_at(now) is not (SubscriptionStatus.ACTIVE)
        ):
            raise NoActiveSubscription()
        subscription.canceled_at = now
        await record_posted(uow, postings, subscription, services)
        bonus = await bonus_lots_of(uow, account)
        await uow.commit()
    return view_of(account, subscription, now, bonus)


async def change_subscription(
    account_id: str, plan: Plan, interval: BillingInterval, services: Services
) -> AccountView:
    """Upgrade now (the difference granted), downgrade at the next renewal, or rebill.

    The anchor never moves, so cycles and renewals stay where they were; changing to the
    plan and billing in force is a no-op answer.
    """
    async with services.db.writing() as uow:
        account = await lock_account(uow, account_id)
        subscription, now = await acting_now(uow, account, services.clock)
        postings = Postings(uow, account, now)
        await bring_up_to_date(uow, account, subscription, postings, now)
        terms = terms_of(subscription)
        if (
            subscription is None
            or terms is None
            or account.cycle_ends_at is None
            or terms.status_at(now) is not SubscriptionStatus.ACTIVE
        ):
            raise NoActiveSubscription()
        change = change_plan(
            terms, plan, interval, services.plans.allowance(plan), account.cycle_ends_at
        )
        bonus = await bonus_lots_of(uow, account)
        if change is None:
            return view_of(account, subscription, now, bonus)
        subscription.plan = change.plan.value
        subscription.interval = change.interval.value
        subscription.monthly_credits = change.monthly_credits
        scheduled = change.scheduled
        subscription.scheduled_plan = scheduled.plan.value if scheduled else None
        subscription.scheduled_credits = scheduled.monthly_credits if scheduled else None
        subscription.scheduled_from = scheduled.from_at if scheduled else None
        if change.grant:
            postings.post(
                LedgerKind.GRANT,
                Bucket.SUBSCRIPTION,
                change.grant,
                reference_type="SUBSCRIPTION",
                reference_id=subscription.id,
            )
        await record_posted(uow, postings, subscription, services)
        await uow.commit()
    return view_of(account, subscription, now, bonus)
