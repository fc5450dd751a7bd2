"""The public price lists: tariffs per tool, plans, credit packs.

Tariffs are read once per process and kept for :data:`TARIFF_TTL_SECONDS`, so a run does not
read its price per request; a price changed in the database (an operator's migration)
applies within that time. Packs are read when used: a purchase and its settlement are rare
and must see a pack taken off sale at once.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from app.domain.model import Plan, Tool
from app.domain.records import CreditPack, Tariff

if TYPE_CHECKING:
    from app.persistence.unit_of_work import Database, UnitOfWork
    from app.services.deps import Services

TARIFF_TTL_SECONDS = 5.0


class TariffCache:
    """The tariffs as last read, refreshed once they are older than the TTL."""

    def __init__(self, ttl_seconds: float = TARIFF_TTL_SECONDS) -> None:
        self._ttl = ttl_seconds
        self._tariffs: dict[Tool, int] = {}
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()

    async def credits(self, db: Database, tool: Tool) -> int | None:
        """The tool's price, or None when it has no tariff."""
        await self._refresh(db)
        return self._tariffs.get(tool)

    async def cheapest(self, uow: UnitOfWork) -> int | None:
        """The lowest tariff: below it an account can run nothing (credits.depleted).

        Called inside a write: when stale, re-read through that transaction, never through a
        connection of its own (writers queued on one account's lock hold the whole pool; one
        more connection each would wait for them forever)."""
        if time.monotonic() - self._read_at > self._ttl:
            self._tariffs = {Tool(tool): credits for tool, credits in await uow.tariffs()}
            self._read_at = time.monotonic()
        return min(self._tariffs.values(), default=None)

    async def _refresh(self, db: Database) -> None:
        if time.monotonic() - self._read_at > self._ttl:
            async with self._lock:
                if time.monotonic() - self._read_at > self._ttl:
                    found = await db.tariffs()
                    self._tariffs = {Tool(tool): credits for tool, credits in found}
                    self._read_at = time.monotonic()


async def list_tariffs(services: Services) -> list[Tariff]:
    async with services.db.reading() as uow:
        rows = await uow.catalog.tariffs()
    order = list(Tool)
    tariffs = [Tariff(Tool(row.tool), row.credits) for row in rows]
    return sorted(tariffs, key=lambda t: order.index(t.tool))


def list_plans(services: Services) -> list[tuple[Plan, int, int]]:
    """Each plan, its monthly credits and its cap on generations at once."""
    plans = services.plans
    return [(plan, plans.allowance(plan), plans.active_limit(plan)) for plan in Plan]


async def list_packs(services: Services) -> list[CreditPack]:
    async with services.db.reading() as uow:
        rows = await uow.catalog.packs()
    # The settings' overrides name the product that sells a pack in a store.
    products = {
        (store, pack): product for (store, product), pack in services.store_products.items()
    }
    return [
        CreditPack(
            r.id,
            r.credits,
            r.price_cents,
            r.currency,
            app_store_product_id=products.get(("APP_STORE", r.id), r.app_store_product_id),
            google_play_product_id=products.get(("GOOGLE_PLAY", r.id), r.google_play_product_id),
        )
        for r in rows
    ]
