"""How a process's runs of one account meet: one at a time, each without the row lock.

Runs of one account queue anyway, on the account row's lock; a process's own runs of an
account queue here instead (``turn``, first come first served), before any connection is
taken, so a burst on one account holds no connection idle behind the row lock and each run
in turn can go without it: read and written in two autocommit statements, the write made
only if the account's version has not moved (plans.write_plan's ``expected_version``). Other
writers (another process, a worker, support) can still move the account between the two; a
run that finds it moved goes again under the lock, and so do the account's runs here for
``cooldown`` seconds after (``may_go_unlocked``), as the other writer is likely busy with it.
A performance guess only: correctness never depends on it, the version check does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

# Accounts remembered as moved, at most; past it the oldest half is forgotten.
MOVED_LIMIT = 10_000


class Contention:
    def __init__(
        self, cooldown: float = 1.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._cooldown = cooldown
        self._monotonic = monotonic
        # Each account with a run in its turn or waiting for it: its lock and their number.
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}
        self._moved: dict[str, float] = {}

    @asynccontextmanager
    async def turn(self, account_id: str) -> AsyncIterator[None]:
        """The account's turn in this process: one run at a time, in arrival order."""
        lock, queued = self._turns.get(account_id, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._turns[account_id] = (lock, queued + 1)
        try:
            async with lock:
                yield
        finally:
            lock, queued = self._turns[account_id]
            if queued > 1:
                self._turns[account_id] = (lock, queued - 1)
            else:
                del self._turns[account_id]

    def queued(self, account_id: str) -> int:
        """Runs of the account in their turn or waiting for it."""
        return self._turns.get(account_id, (None, 0))[1]

    def may_go_unlocked(self, account_id: str) -> bool:
        """Whether a run of the account may read and write without the lock: not if an
        unlocked write found the account moved in the last ``cooldown`` seconds."""
        moved_at = self._moved.get(account_id)
        if moved_at is None:
            return True
        if self._monotonic() - moved_at < self._cooldown:
            return False
        del self._moved[account_id]
        return True

    def moved(self, account_id: str) -> None:
        """An unlocked write found the account moved: its next runs here take the lock."""
        self._moved.pop(account_id, None)
        self._moved[account_id] = self._monotonic()
        if len(self._moved) > MOVED_LIMIT:
            for oldest in list(self._moved)[: MOVED_LIMIT // 2]:
                del self._moved[oldest]
