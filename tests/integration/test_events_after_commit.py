"""Events reach subscribers only once their transaction has committed, on each backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from app.domain.errors import InsufficientCredits
from app.domain.events import AccountChanged
from app.domain.model import Tool
from app.events.live import LiveEvents
from app.main import create_app
from app.services.generations import run_generator
from app.settings import Settings
from tests.api_client import Api

SECONDS = 5.0


@pytest.fixture
async def live(app: object) -> AsyncIterator[LiveEvents]:
    events: LiveEvents = app.state.live  # type: ignore[attr-defined]
    await events.start()
    try:
        yield events
    finally:
        await events.stop()


async def settled(app: object, live: LiveEvents) -> None:
    """Return once every earlier commit's notification has arrived (they come in order)."""
    services = app.state.services  # type: ignore[attr-defined]
    with live.hub.open("barrier", "test") as barrier:
        async with services.db.writing() as uow:
            uow.publish(AccountChanged("barrier"))
            await uow.commit()
        async with asyncio.timeout(SECONDS):
            await barrier.changes()


async def test_a_rolled_back_write_notifies_nobody(api: Api, app: object, live: LiveEvents) -> None:
    # given: a feed on an account without credits, and one on an account with credits
    broke = await api.create_account()
    rich = await api.subscribed_account()
    services = app.state.services  # type: ignore[attr-defined]
    await settled(app, live)
    with live.hub.open(broke, "test") as broke_feed, live.hub.open(rich, "test") as rich_feed:
        # when: a run on the broke account rolls back, then one on the other commits
        with pytest.raises(InsufficientCredits):
            await run_generator(broke, Tool.TURBO, "k1", None, services)
        await run_generator(rich, Tool.TURBO, "k2", None, services)

        # then: the committed one arrives; notifications arrive in commit order, so the
        # rolled-back one, had it been sent, would already be here
        async with asyncio.timeout(SECONDS):
            changes = await rich_feed.changes()
        assert changes.account
        assert len(changes.generations) == 1  # one notification per transaction
        assert not broke_feed.has_news


async def test_an_idempotent_replay_notifies_nobody(
    api: Api, app: object, live: LiveEvents
) -> None:
    account_id = await api.subscribed_account()
    other = await api.subscribed_account()
    services = app.state.services  # type: ignore[attr-defined]
    await run_generator(account_id, Tool.TURBO, "same", None, services)
    await settled(app, live)
    with live.hub.open(account_id, "test") as feed, live.hub.open(other, "test") as marker:
        await run_generator(account_id, Tool.TURBO, "same", None, services)
        await run_generator(other, Tool.TURBO, "k", None, services)
        async with asyncio.timeout(SECONDS):
            await marker.changes()
        assert not feed.has_news


async def test_the_listener_is_ready_only_on_postgres_after_start(settings: Settings) -> None:
    app = create_app(settings)
    live: LiveEvents = app.state.live
    assert live.bus.ready is settings.is_sqlite
    await live.start()
    try:
        assert live.bus.ready
    finally:
        await live.stop()
        await app.state.services.db.dispose()


async def test_the_listener_reconnects_and_every_feed_reads_again(
    api: Api, app: object, live: LiveEvents, database_url: str
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite delivers in-process; there is no listener connection to lose")
    import asyncpg

    from app.events.postgres import PostgresEventBus, asyncpg_dsn

    bus = live.bus
    assert isinstance(bus, PostgresEventBus)
    account_id = await api.subscribed_account()
    await settled(app, live)
    with live.hub.open(account_id, "test") as feed:
        # when: PostgreSQL drops the listener's session
        admin = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            pid = bus._connection.get_server_pid()  # type: ignore[union-attr]
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()

        # then: it reconnects, tells every feed to read again, and delivers again
        async with asyncio.timeout(SECONDS):
            assert (await feed.changes()).resync
        assert bus.ready
        await api.run(account_id)
        async with asyncio.timeout(SECONDS):
            assert (await feed.changes()).account


async def test_services_built_outside_a_gateway_still_notify_the_gateways(
    api: Api, live: LiveEvents, settings: Settings, clock: object, database_url: str
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("on SQLite events stay in the process that commits them")
    from app.main import build_services

    account_id = await api.subscribed_account()
    worker = build_services(settings, clock)  # type: ignore[arg-type]
    try:
        with live.hub.open(account_id, "test") as feed:
            await run_generator(account_id, Tool.TURBO, "from-worker", None, worker)
            async with asyncio.timeout(SECONDS):
                while not (await feed.changes()).generations:
                    pass
    finally:
        await worker.db.dispose()
