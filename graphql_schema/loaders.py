"""Per-request loaders: every account read in one request becomes one query."""

from __future__ import annotations

from asyncio import Future

from aiodataloader import DataLoader, Loader, dispatch_queue

from app.domain.accounts import AccountView
from app.services.accounts import load_accounts
from app.services.deps import Services


class AccountLoader(DataLoader[str, AccountView | None]):
    def __init__(self, services: Services) -> None:
        super().__init__()
        self._services = services

    async def batch_load_fn(self, keys: list[str]) -> list[AccountView | None]:
        return await load_accounts(keys, self._services)

    def do_resolve_reject(self, key: str, future: Future[AccountView | None]) -> None:
        """Queue the key; the first key of a batch schedules its dispatch one tick later.

        aiodataloader schedules a task that schedules a task that runs the batch: three
        turns of the event loop before the query starts. Dispatching from a plain
        ``call_soon`` callback takes one, and keys loaded in the same turn (sibling
        fields, list items) still share the batch.
        """
        self._queue.append(Loader(key=key, future=future))
        if len(self._queue) == 1:
            self.loop.call_soon(dispatch_queue, self)
