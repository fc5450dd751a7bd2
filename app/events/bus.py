"""How a unit of work hands its events on, and the in-process bus for one process."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.events import DomainEvent, live_events
from app.events.hub import Hub

logger = logging.getLogger(__name__)

Observer = Callable[[Sequence[DomainEvent]], None]


class EventBus(Protocol):
    async def stage(self, session: AsyncSession, events: list[DomainEvent]) -> None:
        """Inside the transaction, just before COMMIT."""

    def committed(self, events: list[DomainEvent]) -> None:
        """After COMMIT succeeded. Must not raise: the data is already written."""

    def notifications(self, events: Sequence[DomainEvent]) -> tuple[str, list[str]] | None:
        """The channel and payloads a write plan's own statement sends (None: nothing to
        send in the database; the events are handed to :meth:`stage` as usual)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    @property
    def ready(self) -> bool: ...


class InProcessEventBus:
    """Delivers after commit to this process's subscribers: SQLite, one serving process."""

    def __init__(self, hub: Hub, observers: Sequence[Observer] = ()) -> None:
        self.hub = hub
        self._observers = list(observers)

    async def stage(self, session: AsyncSession, events: list[DomainEvent]) -> None:
        return None

    def notifications(self, events: Sequence[DomainEvent]) -> tuple[str, list[str]] | None:
        return None

    def committed(self, events: list[DomainEvent]) -> None:
        self._observe(events)
        for event in live_events(events):
            self.hub.deliver(event)

    def _observe(self, events: list[DomainEvent]) -> None:
        for observer in self._observers:
            try:
                observer(events)
            except Exception:
                logger.exception("event observer failed")

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    @property
    def ready(self) -> bool:
        return True
