"""The public price lists: tariffs per tool, plans, credit packs."""

from __future__ import annotations

from app.domain.model import Plan, Tool
from app.domain.records import CreditPack, Tariff
from app.services.deps import Services


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
    return [CreditPack(r.id, r.credits, r.price_cents, r.currency) for r in rows]
