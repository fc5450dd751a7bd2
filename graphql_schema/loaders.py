"""Per-request loaders: every account read in one request becomes one query."""

from __future__ import annotations

from aiodataloader import DataLoader

from app.domain.accounts import AccountView
from app.services.accounts import load_accounts
from app.services.deps import Services


class AccountLoader(DataLoader[str, AccountView | None]):
    def __init__(self, services: Services) -> None:
        super().__init__()
        self._services = services

    async def batch_load_fn(self, keys: list[str]) -> list[AccountView | None]:
        return await load_accounts(keys, self._services)
