"""An account's credit buckets and how time changes them.

The stored wallet is right as of its last write. Renewals that fell due since are computed
here, from the subscription's anchor, so reads are right at every instant without a cron job
and writes record each renewal in the ledger when they materialise it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.domain.cycles import cycle_end, cycle_index_at, cycle_start
from app.domain.subscriptions import SubscriptionTerms


@dataclass(frozen=True, slots=True)
class Wallet:
    subscription_balance: int
    pack_balance: int
    # The cycle the subscription balance belongs to, and when it (and every pack) expires.
    cycle_index: int | None
    cycle_ends_at: datetime | None
    # Bonus lots (support's adjustments) as of the last write. They expire on dates of their
    # own, not at renewals: a read projects them from the lots (``bonus_at``).
    bonus_balance: int = 0

    @property
    def total(self) -> int:
        return self.subscription_balance + self.pack_balance + self.bonus_balance

    @classmethod
    def empty(cls) -> Wallet:
        return cls(0, 0, None, None)


@dataclass(frozen=True, slots=True)
class Renewal:
    """One monthly renewal: what expired and what the new cycle granted."""

    at: datetime
    cycle_index: int | None
    expired_subscription: int
    expired_packs: int
    granted: int


def renewals_due(
    wallet: Wallet, terms: SubscriptionTerms | None, now: datetime
) -> tuple[list[Renewal], Wallet]:
    """Every renewal at or before ``now`` that the wallet has not seen, and the wallet after."""
    renewals: list[Renewal] = []
    while wallet.cycle_ends_at is not None and wallet.cycle_ends_at <= now:
        at = wallet.cycle_ends_at
        if terms is not None and wallet.cycle_index is not None and terms.renews_at(at):
            k = wallet.cycle_index + 1
            grant = terms.allowance_at(at)
            nxt = Wallet(grant, 0, k, cycle_end(terms.started_at, k), wallet.bonus_balance)
        else:
            k, grant, nxt = None, 0, Wallet(0, 0, None, None, wallet.bonus_balance)
        renewals.append(Renewal(at, k, wallet.subscription_balance, wallet.pack_balance, grant))
        wallet = nxt
    return renewals, wallet


def wallet_at(wallet: Wallet, terms: SubscriptionTerms | None, now: datetime) -> Wallet:
    """The balances as they stand at ``now``: the read side of :func:`renewals_due`."""
    return renewals_due(wallet, terms, now)[1]


def start_cycle(wallet: Wallet, terms: SubscriptionTerms, now: datetime) -> tuple[Renewal, Wallet]:
    """A new subscription opens the cycle containing ``now`` with a fresh allowance.

    Starting a subscription is a renewal: whatever the previous one left (subscription or
    pack credits) expires, as packs do at every renewal. Bonus lots keep their own dates.
    """
    k = cycle_index_at(terms.started_at, now)
    renewal = Renewal(
        now, k, wallet.subscription_balance, wallet.pack_balance, terms.monthly_credits
    )
    ends = cycle_end(terms.started_at, k)
    return renewal, Wallet(terms.monthly_credits, 0, k, ends, wallet.bonus_balance)


def recorded_until(wallet: Wallet, terms: SubscriptionTerms | None) -> datetime | None:
    """The latest instant the account's records already speak of (None: nothing timed).

    That is the start of its recorded cycle, or the end of a plan whose end was recorded,
    and the instants its subscription was started and cancelled at.
    """
    if terms is None:
        return None
    instants = [i for i in (terms.recorded_at, terms.canceled_at) if i is not None]
    if wallet.cycle_index is not None:
        instants.append(cycle_start(terms.started_at, wallet.cycle_index))
    elif (ended := terms.ends_at()) is not None:
        instants.append(ended)
    return max(instants, default=None)


def acting_instant(reading: datetime, wallet: Wallet, terms: SubscriptionTerms | None) -> datetime:
    """The instant a write acts at: the clock's reading, never before what was recorded.

    ``wallet`` and ``terms`` are as loaded under the account's lock. A reading taken before
    another request recorded a renewal (or from a process whose clock is behind) is moved up
    to that renewal, so every decision of the write sees the cycle the account is in.
    """
    floor = recorded_until(wallet, terms)
    return reading if floor is None or reading >= floor else floor
