"""The live-events parts one process runs, chosen by the database it serves."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.engine import make_url

from app.clock import Clock
from app.events.alarm import RenewalAlarm
from app.events.bus import EventBus, InProcessEventBus, Observer
from app.events.hub import Hub
from app.events.postgres import PostgresEventBus
from app.settings import Settings


@dataclass(frozen=True, slots=True)
class LiveEvents:
    hub: Hub
    bus: EventBus
    alarm: RenewalAlarm

    async def start(self) -> None:
        await self.bus.start()
        self.alarm.start()

    async def stop(self) -> None:
        await self.alarm.stop()
        await self.bus.stop()


def build_live_events(
    settings: Settings,
    clock: Clock,
    observers: Sequence[Observer] = (),
    on_feed: Callable[[str, int], None] | None = None,
) -> LiveEvents:
    hub = Hub(
        max_connections_per_account=settings.max_connections_per_account,
        max_subscriptions_per_account=settings.max_subscriptions_per_account,
        on_feed=on_feed,
    )
    url = settings.events_database_url or settings.database_url
    bus: EventBus
    if make_url(url).get_backend_name() == "postgresql":
        bus = PostgresEventBus(hub, url, observers)
    else:
        bus = InProcessEventBus(hub, observers)
    alarm = RenewalAlarm(hub, clock, max_sleep=settings.renewal_check_seconds)
    return LiveEvents(hub, bus, alarm)
