"""Bringing the books up to date with time: due renewals, expired bonus lots and timed-out
generations.

Balances are right at every instant without this (reads project renewals); the sweep records
what time did in the ledger promptly, so history and audit need not wait for the next write.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.services.deps import Services
from app.services.generations import release_stale_generations
from app.services.wallets import Postings, acting_now, bring_up_to_date, lock_account
from app.services.webhook_events import record_posted


@dataclass(frozen=True, slots=True)
class SweepReport:
    # Accounts whose renewals or bonus expiries were recorded.
    renewed_accounts: int
    released_generations: int


async def catch_up(account_id: str, services: Services) -> bool:
    """Record the account's due renewals and bonus expiries; True if there were any (no
    write otherwise).

    The unlocked look only spares a write; what is recorded is judged at the instant taken
    under the lock.
    """
    looked_at = services.clock.now()
    async with services.db.reading() as uow:
        account = await uow.accounts.get(account_id)
        if account is None:
            return False
        due = account.cycle_ends_at is not None and account.cycle_ends_at <= looked_at
        if not due and account.bonus_balance:
            lots = await uow.adjustments.bonus_with_credits_left(account_id)
            due = any(lot.expires_at is not None and lot.expires_at <= looked_at for lot in lots)
        if not due:
            return False
    async with services.db.writing() as uow:
        account = await lock_account(uow, account_id)
        subscription, now = await acting_now(uow, account, services.clock)
        postings = Postings(uow, account, now)
        await bring_up_to_date(uow, account, subscription, postings, now)
        await record_posted(uow, postings, subscription, services)
        await uow.commit()
    return True


async def sweep(services: Services, *, batch: int = 500) -> SweepReport:
    """Each account is renewed at an instant of its own, taken under its lock."""
    async with services.db.reading() as uow:
        now = services.clock.now()
        due = await uow.accounts.due_for_renewal(now, batch)
        expired = await uow.accounts.with_bonus_expired(now, batch)
    due = list(dict.fromkeys([*due, *expired]))
    renewed = 0
    for account_id in due:
        renewed += await catch_up(account_id, services)
    released = await release_stale_generations(services, limit=batch)
    return SweepReport(renewed, released)
