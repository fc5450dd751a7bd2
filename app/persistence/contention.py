"""Which accounts a run may be written for without the account's lock.

A run read and written without the lock (two autocommit statements, plans.write_plan's
``expected_version``) is cheaper than one under it (BEGIN with the lock, state, plan,
COMMIT), but only while no other writer moves the account in between: a moved account costs
the two statements again under the lock. So a run takes the lock at once where another is
likely to move the account: an account with a run already in flight in this process (a
burst on one account would otherwise move under most of them), and one whose unlocked write
found it moved in the last ``cooldown`` seconds (the other writer is elsewhere: another
process, a worker, support). A performance guess only: correctness never depends on it,
the version check does.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Accounts remembered as moved, at most; past it the oldest half is forgotten.
MOVED_LIMIT = 10_000


class Contention:
    def __init__(
        self, cooldown: float = 1.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._cooldown = cooldown
        self._monotonic = monotonic
        self._in_flight: dict[str, int] = {}
        self._moved: dict[str, float] = {}

    def enter(self, account_id: str) -> bool:
        """A run of ``account_id`` starts; whether it may read and write without the lock.
        Every ``enter`` is followed by one ``leave``."""
        running = self._in_flight.get(account_id, 0)
        self._in_flight[account_id] = running + 1
        if running:
            return False
        moved_at = self._moved.get(account_id)
        if moved_at is None:
            return True
        if self._monotonic() - moved_at < self._cooldown:
            return False
        del self._moved[account_id]
        return True

    def leave(self, account_id: str) -> None:
        running = self._in_flight.pop(account_id)
        if running > 1:
            self._in_flight[account_id] = running - 1

    def moved(self, account_id: str) -> None:
        """An unlocked write found the account moved: its next runs here take the lock."""
        self._moved.pop(account_id, None)
        self._moved[account_id] = self._monotonic()
        if len(self._moved) > MOVED_LIMIT:
            for oldest in list(self._moved)[: MOVED_LIMIT // 2]:
                del self._moved[oldest]

    def in_flight(self, account_id: str) -> int:
        return self._in_flight.get(account_id, 0)
