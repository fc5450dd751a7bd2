"""Reads the live feeds make after each event: fresh from the database, never cached."""

from __future__ import annotations

from app.domain.errors import GenerationNotFound
from app.domain.records import Generation
from app.services.deps import Services
from app.services.mapping import generation_of


async def own_generation(account_id: str, generation_id: str, services: Services) -> Generation:
    """The account's generation; another account's reads as not found."""
    async with services.db.reading() as uow:
        row = await uow.generations.get(generation_id)
    if row is None or row.account_id != account_id:
        raise GenerationNotFound(generation_id)
    return generation_of(row)


async def open_holds(services: Services) -> int:
    async with services.db.reading() as uow:
        return await uow.holds.count_open()
