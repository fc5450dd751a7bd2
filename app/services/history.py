"""Reading an account's history: its ledger and its generations, newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from app.domain.errors import GenerationNotFound, InvalidInput, PurchaseNotFound
from app.domain.model import GenerationStatus
from app.domain.records import Generation, LedgerEntry, PackPurchase
from app.services.deps import Services
from app.services.maintenance import catch_up
from app.services.mapping import generation_of, ledger_entry_of, purchase_of

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    has_next_page: bool


def _check_size(first: int) -> None:
    # The upper bound is the transport's (a setting); a page of nothing is never asked for.
    if first < 1:
        raise InvalidInput("first", "first must be at least 1.")


async def ledger_page(
    account_id: str, first: int, after_id: int | None, services: Services
) -> Page[LedgerEntry]:
    _check_size(first)
    if after_id is None:
        # The first page shows renewals that are due even if no write has recorded them yet.
        await catch_up(account_id, services)
    async with services.db.reading() as uow:
        rows = await uow.ledger.page(account_id, before_id=after_id, limit=first + 1)
    return Page([ledger_entry_of(r) for r in rows[:first]], len(rows) > first)


async def generations_page(
    account_id: str,
    first: int,
    after: tuple[datetime, str] | None,
    status: GenerationStatus | None,
    services: Services,
) -> Page[Generation]:
    _check_size(first)
    async with services.db.reading() as uow:
        rows = await uow.generations.page(
            account_id, status=status.value if status else None, before=after, limit=first + 1
        )
    return Page([generation_of(r) for r in rows[:first]], len(rows) > first)


async def get_generation(generation_id: str, services: Services) -> Generation:
    async with services.db.reading() as uow:
        row = await uow.generations.get(generation_id)
    if row is None:
        raise GenerationNotFound(generation_id)
    return generation_of(row)


async def active_generations(account_id: str, services: Services) -> int:
    """Runs QUEUED or RUNNING: what the plan's cap counts (``Account.activeGenerations``)."""
    async with services.db.reading() as uow:
        return await uow.generations.count_active(account_id)


async def purchases_page(
    account_id: str, first: int, after: tuple[datetime, str] | None, services: Services
) -> Page[PackPurchase]:
    _check_size(first)
    async with services.db.reading() as uow:
        rows = await uow.purchases.page(account_id, before=after, limit=first + 1)
    return Page([purchase_of(r) for r in rows[:first]], len(rows) > first)


async def get_purchase(
    purchase_id: str, account_id: str | None, services: Services
) -> PackPurchase:
    """A purchase; for a user (``account_id`` set) another account's reads as not found."""
    async with services.db.reading() as uow:
        row = await uow.purchases.get(purchase_id)
    if row is None or (account_id is not None and row.account_id != account_id):
        raise PurchaseNotFound(purchase_id)
    return purchase_of(row)
