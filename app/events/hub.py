"""This process's live subscribers. Nothing here needs to be shared with other processes.

Besides the feeds, the hub holds what bounds one account's share of the process: its
websocket connections (``Session``, each with the moment its token expires), its
subscriptions, and one shared read per account per event (``Hub.shared_read``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from app.domain.events import GenerationUpdated, LiveEvent

T = TypeVar("T")


class OverCapacity(Exception):
    """An account already holds as many connections or subscriptions as one process allows."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"At most {limit} {what} per account.")
        self.what = what
        self.limit = limit


class Session:
    """One websocket connection of an account; ``expired`` is set when its token runs out."""

    def __init__(self, hub: Hub, account_id: str | None, expires_at: datetime) -> None:
        self.account_id = account_id
        self.expires_at = expires_at
        self.expired = asyncio.Event()
        self._hub = hub

    def close(self) -> None:
        self._hub._sessions.discard(self)


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
    def __init__(
        self,
        *,
        max_connections_per_account: int = 5,
        max_subscriptions_per_account: int = 20,
        on_feed: Callable[[str, int], None] | None = None,
    ) -> None:
        self._feeds: dict[str, set[Feed]] = {}
        # Told (kind, +1) when a feed opens and (kind, -1) when it closes: the metrics.
        self._on_feed = on_feed
        self.deadlines_changed = asyncio.Event()
        # The moment the alarm sleeps until; only an earlier deadline needs to wake it.
        self.alarm_target: datetime | None = None
        self.max_connections_per_account = max_connections_per_account
        self.max_subscriptions_per_account = max_subscriptions_per_account
        self._sessions: set[Session] = set()
        self._subscriptions: dict[str, int] = {}
        # Per account: a counter bumped by every event, and the reads made at its value.
        self._generations: dict[str, int] = {}
        self._reads: dict[str, tuple[int, dict[Hashable, asyncio.Task[Any]]]] = {}

    def connect(self, account_id: str | None, expires_at: datetime) -> Session:
        """A connection's place in the process, or OverCapacity; ``Session.close`` frees it.

        Service tokens (no account) are trusted backends and are not counted.
        """
        limit = self.max_connections_per_account
        if account_id is not None and self.connections_of(account_id) >= limit:
            raise OverCapacity("websocket connections", limit)
        session = Session(self, account_id, expires_at)
        self._sessions.add(session)
        self.deadline_set(expires_at)
        return session

    def hold_subscription(self, account_id: str) -> Callable[[], None]:
        """Count one subscription of ``account_id`` across connections; returns its release."""
        held = self._subscriptions.get(account_id, 0)
        if held >= self.max_subscriptions_per_account:
            raise OverCapacity("subscriptions", self.max_subscriptions_per_account)
        self._subscriptions[account_id] = held + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self._subscriptions[account_id] - 1
            if left:
                self._subscriptions[account_id] = left
            else:
                del self._subscriptions[account_id]

        return release

    def connections_of(self, account_id: str) -> int:
        return sum(1 for session in self._sessions if session.account_id == account_id)

    def subscriptions_of(self, account_id: str) -> int:
        return self._subscriptions.get(account_id, 0)

    async def shared_read(
        self, account_id: str, key: Hashable, read: Callable[[], Awaitable[T]]
    ) -> T:
        """``read()`` once per account, key and event, whichever of its feeds asks first.

        A read started after the account's latest event sees every change delivered so far,
        so each feed woken by that event may take it: 100 feeds of one account, one read.
        The read runs as its own task, so a subscriber leaving does not cancel the others'.
        """
        generation = self._generations.get(account_id, 0)
        seen, reads = self._reads.get(account_id, (None, {}))
        if seen != generation:
            reads = {}
            self._reads[account_id] = (generation, reads)
        task = reads.get(key)
        if task is None:

            async def run() -> T:
                return await read()

            task = reads[key] = asyncio.ensure_future(run())
            # Retrieved even if every feed that awaited it has left: no "never retrieved".
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
        result: T = await asyncio.shield(task)
        return result

    def _changed(self, account_id: str) -> None:
        self._generations[account_id] = self._generations.get(account_id, 0) + 1

    @contextmanager
    def open(self, account_id: str, kind: str) -> Iterator[Feed]:
        feed = Feed(self, account_id, kind)
        self._feeds.setdefault(account_id, set()).add(feed)
        if self._on_feed is not None:
            self._on_feed(kind, 1)
        try:
            yield feed
        finally:
            if self._on_feed is not None:
                self._on_feed(kind, -1)
            feeds = self._feeds.get(account_id, set())
            feeds.discard(feed)
            if not feeds:
                self._feeds.pop(account_id, None)
                self._generations.pop(account_id, None)
                self._reads.pop(account_id, None)

    def deliver(self, event: LiveEvent) -> None:
        feeds = self._feeds.get(event.account_id, ())
        if feeds:
            self._changed(event.account_id)
        for feed in feeds:
            feed.notify(event)

    def resync(self) -> None:
        for account_id in self._feeds:
            self._changed(account_id)
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
        """The next renewal or expiry a feed waits for, or the next token to run out."""
        wakes = (f.wake_at for f in self.all_feeds() if f.wake_at)
        expiries = (s.expires_at for s in self._sessions if not s.expired.is_set())
        return min((*wakes, *expiries), default=None)

    def wake_due(self, now: datetime) -> int:
        """Wake the feeds whose moment has come and expire sessions whose token has run out;
        how many feeds were woken."""
        for session in self._sessions:
            if session.expires_at <= now:
                session.expired.set()
        due = [f for f in self.all_feeds() if f.wake_at is not None and f.wake_at <= now]
        for account_id in {f.account_id for f in due}:
            self._changed(account_id)
        for feed in due:
            feed.notify_time_passed()
        return len(due)
