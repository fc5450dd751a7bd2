"""What an account looks like at a moment: the view every client reads."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from app.domain.adjustments import bonus_at
from app.domain.model import SubscriptionStatus
from app.domain.spending import PackLot
from app.domain.subscriptions import SubscriptionTerms
from app.domain.wallet import Wallet, wallet_at


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    id: str
    terms: SubscriptionTerms
    status: SubscriptionStatus


@dataclass(frozen=True, slots=True)
class AccountView:
    id: str
    email: str
    created_at: datetime
    subscription_balance: int
    pack_balance: int
    pack_expires_at: datetime | None
    next_renewal_at: datetime | None
    subscription: SubscriptionView | None
    # Support's bonus lots live now, and when the first of them expires.
    bonus_balance: int = 0
    bonus_expires_at: datetime | None = None

    @property
    def credits_total(self) -> int:
        return self.subscription_balance + self.bonus_balance + self.pack_balance


def account_view(
    *,
    account_id: str,
    email: str,
    created_at: datetime,
    wallet: Wallet,
    subscription_id: str | None,
    terms: SubscriptionTerms | None,
    now: datetime,
    bonus_lots: Iterable[PackLot] = (),
) -> AccountView:
    """Project the stored wallet to ``now`` (renewals included) and describe it.

    ``bonus_lots``: the account's bonus lots with credits left as stored; each counts until
    its own expiry.
    """
    current = wallet_at(wallet, terms, now)
    bonus_balance, bonus_expires_at = bonus_at(bonus_lots, now)
    terms = terms.as_of(now) if terms else None
    status = terms.status_at(now) if terms else None
    subscription = (
        SubscriptionView(subscription_id, terms, status)
        if terms is not None and subscription_id is not None and status is not None
        else None
    )
    return AccountView(
        id=account_id,
        email=email,
        created_at=created_at,
        subscription_balance=current.subscription_balance,
        pack_balance=current.pack_balance,
        pack_expires_at=current.cycle_ends_at if current.pack_balance else None,
        next_renewal_at=current.cycle_ends_at if status is SubscriptionStatus.ACTIVE else None,
        subscription=subscription,
        bonus_balance=bonus_balance,
        bonus_expires_at=bonus_expires_at,
    )
