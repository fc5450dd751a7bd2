"""Renewals and expiries that happen with no request: time passing is an event too."""

from __future__ import annotations

import asyncio
import contextlib

from app.clock import Clock
from app.events.hub import Hub


class RenewalAlarm:
    """Sleeps until the earliest moment a subscribed account changes by time, then wakes it.

    Each feed says when its account next changes (``Feed.wake``); only subscribers' own
    accounts are watched and nothing is written: reads project renewals. ``max_sleep`` bounds
    each sleep so a clock that jumps (tests, NTP) is noticed; ``poke`` checks at once.
    """

    def __init__(self, hub: Hub, clock: Clock, *, max_sleep: float = 30.0) -> None:
        self._hub = hub
        self._clock = clock
        self._max_sleep = max_sleep
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        self._hub.deadlines_changed.set()

    def check(self) -> int:
        """Wake every feed whose moment has come; how many were woken."""
        return self._hub.wake_due(self._clock.now())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        changed = self._hub.deadlines_changed
        while True:
            # Clear before checking: a poke or a new deadline during the check is not lost.
            changed.clear()
            self.check()
            earliest = self._hub.earliest_deadline()
            self._hub.alarm_target = earliest
            delay = self._max_sleep
            if earliest is not None:
                seconds = (earliest - self._clock.now()).total_seconds()
                delay = min(max(seconds, 0.0), self._max_sleep)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), delay)
