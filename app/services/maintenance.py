"""Bringing the books up to date with time: due renewals and timed-out generations.

Balances are right at every instant without this (reads project renewals); the sweep records
what time did in the ledger promptly, so history and audit need not wait for the next write.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.services.deps import Services
from app.services.generations import release_stale_generations
from app.services.wallets import Postings, bring_up_to_date, current_subscription, lock_account


@dataclass(frozen=True, slots=True)
class SweepReport:
    renewed_accounts: int
    released_generations: int


async def catch_up(account_id: str, services: Services) -> bool:
    """Record the account's due renewals; True if there were any (no write otherwise)."""
    now = services.clock.now()
    async with services.db.reading() as uow:
        account = await uow.accounts.get(account_id)
        if account is None or account.cycle_ends_at is None or account.cycle_ends_at > now:
            return False
    async with services.db.writing() as uow:
        account = await lock_account(uow, account_id)
        subscription = await current_subscription(uow, account)
        await bring_up_to_date(uow, account, subscription, Postings(uow, account, now), now)
        await uow.commit()
    return True


async def sweep(services: Services, *, batch: int = 500) -> SweepReport:
    now = services.clock.now()
    async with services.db.reading() as uow:
        due = await uow.accounts.due_for_renewal(now, batch)
    renewed = 0
    for account_id in due:
        renewed += await catch_up(account_id, services)
    released = await release_stale_generations(services, limit=batch)
    return SweepReport(renewed, released)
