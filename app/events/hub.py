"""This process's live subscribers. Nothing here needs to be shared with other processes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from app.domain.events import GenerationUpdated, LiveEvent


@dataclass(frozen=True, slots=True)
class Changes:
    """What happened to a feed's account since it last looked."""

    account: bool
    generations: tuple[str, ...]
    # Notifications may have been lost (listener reconnected): read everything again.
    resync: bool
    time_passed: bool


class Feed:
    """One subscription's inbox. Changes coalesce, so a slow client never queues up events."""

    def __init__(self, hub: Hub, account_id: str, kind: str) -> None:
        self.account_id = account_id
        self.kind = kind
        self.wake_at: datetime | None = None
        self._hub = hub
        self._signal = asyncio.Event()
        self._account = False
        self._generations: dict[str, None] = {}
        self._resync = False
        self._time_passed = False

    def notify(self, event: LiveEvent) -> None:
        if isinstance(event, GenerationUpdated):
            self._generations.setdefault(event.generation_id)
        self._account = True
        self._signal.set()

    def notify_resync(self) -> None:
        self._resync = self._account = True
        self._signal.set()

    def notify_time_passed(self) -> None:
        self.wake_at = None
        self._time_passed = self._account = True
        self._signal.set()

    @property
    def has_news(self) -> bool:
        """Something happened that :meth:`changes` has not returned yet."""
        return self._signal.is_set()

    def wake(self, at: datetime | None) -> None:
        """Be woken at ``at`` (a renewal or expiry) even if nothing is written then."""
        self.wake_at = at
        if at is not None:
            self._hub.deadline_set(at)

    async def changes(self) -> Changes:
        await self._signal.wait()
        self._signal.clear()
        changes = Changes(self._account, tuple(self._generations), self._resync, self._time_passed)
        self._account = self._resync = self._time_passed = False
        self._generations = {}
        return changes


class Hub:
    def __init__(self) -> None:
        self._feeds: dict[str, set[Feed]] = {}
        self.deadlines_changed = asyncio.Event()
        # The moment the alarm sleeps until; only an earlier deadline needs to wake it.
        self.alarm_target: datetime | None = None

    @contextmanager
    def open(self, account_id: str, kind: str) -> Iterator[Feed]:
        feed = Feed(self, account_id, kind)
        self._feeds.setdefault(account_id, set()).add(feed)
        try:
            yield feed
        finally:
            feeds = self._feeds.get(account_id, set())
            feeds.discard(feed)
            if not feeds:
                self._feeds.pop(account_id, None)

    def deliver(self, event: LiveEvent) -> None:
        for feed in self._feeds.get(event.account_id, ()):
            feed.notify(event)

    def resync(self) -> None:
        for feed in self.all_feeds():
            feed.notify_resync()

    def all_feeds(self) -> list[Feed]:
        return [feed for feeds in self._feeds.values() for feed in feeds]

    def count(self, kind: str) -> int:
        return sum(1 for feed in self.all_feeds() if feed.kind == kind)

    def deadline_set(self, at: datetime) -> None:
        if self.alarm_target is None or at < self.alarm_target:
            self.deadlines_changed.set()

    def earliest_deadline(self) -> datetime | None:
        return min((f.wake_at for f in self.all_feeds() if f.wake_at), default=None)

    def wake_due(self, now: datetime) -> int:
        due = [f for f in self.all_feeds() if f.wake_at is not None and f.wake_at <= now]
        for feed in due:
            feed.notify_time_passed()
        return len(due)
