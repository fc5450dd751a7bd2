"""Bench data: subscribed accounts made through the services, history in bulk SQL, checks."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy import text

from app.domain.model import BillingInterval, Plan, Tool
from app.services.accounts import create_account
from app.services.deps import Services
from app.services.generations import run_generator
from app.services.subscriptions import start_subscription


async def subscribed_accounts(services: Services, prefix: str, count: int) -> list[str]:
    """Accounts on the PRO plan, made by the same use cases the API runs."""

    async def one(number: int) -> str:
        view = await create_account(f"{prefix}-{number}@bench.example", services)
        await start_subscription(view.id, Plan.PRO, BillingInterval.MONTHLY, None, services)
        return view.id

    ids: list[str] = []
    for start in range(0, count, 16):
        batch = range(start, min(start + 16, count))
        ids += await asyncio.gather(*(one(number) for number in batch))
    return ids


async def runs(services: Services, account_id: str, count: int, prefix: str) -> None:
    for number in range(count):
        await run_generator(
            account_id, Tool.BACKGROUND_REMOVAL, f"{prefix}-{number}", None, services
        )


async def bulk_history(services: Services, account_id: str, pairs: int) -> None:
    """``2 * pairs`` ledger entries in one statement (PostgreSQL's generate_series).

    Each pair is a spend of one credit and its refund, so the balance on the account row stays
    the sum of its ledger. The ledger refuses UPDATE and DELETE, never INSERT.
    """
    statement = text(
        """
        INSERT INTO ledger_entries (account_id, kind, bucket, amount, balance_after,
                                    reference_type, occurred_at, recorded_at)
        SELECT a.id,
               CASE WHEN i % 2 = 1 THEN 'SPEND' ELSE 'REFUND' END,
               'SUBSCRIPTION',
               CASE WHEN i % 2 = 1 THEN -1 ELSE 1 END,
               a.subscription_balance - i % 2,
               'SEED', now(), now()
        FROM accounts AS a, generate_series(1, :rows) AS i
        WHERE a.id = :account_id
        """
    )
    async with services.db.engine.begin() as connection:
        await connection.execute(statement, {"rows": 2 * pairs, "account_id": account_id})


async def ledger_counts(services: Services, account_ids: Sequence[str]) -> dict[str, int]:
    query = text("SELECT account_id, count(*) FROM ledger_entries GROUP BY account_id")
    async with services.db.engine.connect() as connection:
        counts: dict[str, int] = dict((await connection.execute(query)).tuples().all())
    return {account_id: int(counts.get(account_id, 0)) for account_id in account_ids}


async def consistency(services: Services) -> dict[str, int]:
    """Every account's balances equal the sum of its ledger; no bucket below zero."""
    query = text(
        """
        SELECT count(*) AS accounts,
               sum(CASE WHEN a.subscription_balance + a.pack_balance
                             = coalesce(l.total, 0) THEN 0 ELSE 1 END) AS mismatched,
               sum(coalesce(l.entries, 0)) AS ledger_entries
        FROM accounts AS a
        LEFT JOIN (SELECT account_id, sum(amount) AS total, count(*) AS entries
                   FROM ledger_entries GROUP BY account_id) AS l ON l.account_id = a.id
        """
    )
    generations = text("SELECT count(*) FROM generations")
    async with services.db.engine.connect() as connection:
        accounts, mismatched, entries = (await connection.execute(query)).one()
        runs_made = (await connection.execute(generations)).scalar_one()
    return {
        "accounts": int(accounts),
        "accounts_with_balance_not_ledger_sum": int(mismatched or 0),
        "ledger_entries": int(entries or 0),
        "generations": int(runs_made),
    }
