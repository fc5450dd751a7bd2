"""Live events across processes and hosts through PostgreSQL's LISTEN/NOTIFY.

The unit of work sends ``SELECT pg_notify(...)`` inside its own transaction, so PostgreSQL
delivers the notification only if that transaction commits, and after it has. Every serving
process LISTENs on one dedicated connection (the publisher included) and hands what arrives
to its own hub. No extra infrastructure; at-most-once, so after a reconnect every feed
re-reads once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.events import AccountChanged, DomainEvent, GenerationUpdated, LiveEvent, live_events
from app.events.bus import InProcessEventBus, Observer
from app.events.hub import Hub

logger = logging.getLogger(__name__)

CHANNEL = "creditgate_events"
NOTIFY = text("SELECT pg_notify(:channel, :payload)")
MAX_PAYLOAD_BYTES = 7000


def encode(events: list[LiveEvent]) -> list[str]:
    """One payload per transaction (split only past PostgreSQL's 8000-byte limit)."""
    payloads: list[str] = []
    batch: list[str] = []
    size = 2  # the brackets
    for event in events:
        item = json.dumps([event.account_id, getattr(event, "generation_id", None)])
        if batch and size + len(item) + 1 > MAX_PAYLOAD_BYTES:
            payloads.append(f"[{','.join(batch)}]")
            batch, size = [], 2
        batch.append(item)
        size += len(item) + 1
    if batch:
        payloads.append(f"[{','.join(batch)}]")
    return payloads


def decode(payload: str) -> list[LiveEvent]:
    try:
        items = json.loads(payload)
    except ValueError:
        return []
    events: list[LiveEvent] = []
    for item in items if isinstance(items, list) else ():
        match item:
            case [str(account_id), str(generation_id)]:
                events.append(GenerationUpdated(generation_id, account_id))
            case [str(account_id), None]:
                events.append(AccountChanged(account_id))
    return events


# Query options SQLAlchemy's asyncpg dialect understands and asyncpg.connect does not
# (it would send them to the server as settings, which PostgreSQL refuses).
DIALECT_ONLY_OPTIONS = ("prepared_statement_cache_size", "prepared_statement_name_func")


def asyncpg_dsn(database_url: str) -> str:
    url = make_url(database_url).set(drivername="postgresql")
    return url.difference_update_query(DIALECT_ONLY_OPTIONS).render_as_string(False)


def asyncpg_connect_kwargs(database_url: str) -> dict[str, Any]:
    """``asyncpg.connect`` arguments read from the URL the way the request pool reads it.

    A DSN would lose hosts: a multi-host URL (``?host=h1:p1&host=h2:p2``, with
    ``target_session_attrs=read-write`` to find the primary) keeps only the last ``host``
    when asyncpg parses it; the dialect hands every host over, as lists."""
    url = make_url(database_url)
    dialect = url.get_dialect()()
    _args, kwargs = dialect.create_connect_args(url)
    return {k: v for k, v in kwargs.items() if k not in DIALECT_ONLY_OPTIONS}


# During a failover every host may answer and none be the primary yet: asyncpg says so with
# an error of its own (not a PostgresError); the listener waits for the promotion.
CONNECT_ERRORS = asyncpg.exceptions.TargetServerAttributeNotMatched


class PostgresEventBus(InProcessEventBus):
    def __init__(
        self,
        hub: Hub,
        database_url: str,
        observers: Sequence[Observer] = (),
        *,
        check_every: float = 10.0,
        retry_every: float = 1.0,
    ) -> None:
        super().__init__(hub, observers)
        self._connect_kwargs = asyncpg_connect_kwargs(database_url)
        self._check_every = check_every
        self._retry_every = retry_every
        self._connection: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None

    async def stage(self, session: AsyncSession, events: list[DomainEvent]) -> None:
        connection = await session.connection()
        for payload in encode(live_events(events)):
            await connection.execute(NOTIFY, {"channel": CHANNEL, "payload": payload})

    def notifications(self, events: Sequence[DomainEvent]) -> tuple[str, list[str]] | None:
        """For a write plan's statement, which sends them itself (same transaction)."""
        return CHANNEL, encode(live_events(list(events)))

    def committed(self, events: list[DomainEvent]) -> None:
        # Live events come back through LISTEN, to this process as to every other.
        self._observe(events)

    @property
    def ready(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def start(self) -> None:
        await self._connect()
        self._supervisor = asyncio.create_task(self._keep_listening())

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._connection is not None:
            await self._connection.close(timeout=2)
            self._connection = None

    async def _connect(self) -> None:
        self._lost = asyncio.Event()
        connection = await asyncpg.connect(**self._connect_kwargs)
        lost = self._lost
        connection.add_termination_listener(lambda _c: lost.set())
        await connection.add_listener(CHANNEL, self._on_notification)
        self._connection = connection

    def _on_notification(self, _c: object, _pid: int, _channel: str, payload: str) -> None:
        for event in decode(payload):
            self.hub.deliver(event)

    async def _keep_listening(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self._check_every)
            if not self._lost.is_set() and await self._alive():
                continue
            logger.warning("event listener lost its connection; reconnecting")
            await self._reconnect()
            # Whatever was notified while we were away is lost: every feed reads again.
            self.hub.resync()

    async def _alive(self) -> bool:
        assert self._connection is not None
        try:
            await self._connection.fetchval("SELECT 1", timeout=self._check_every)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        return True

    async def _reconnect(self) -> None:
        if self._connection is not None:
            self._connection.terminate()
            self._connection = None
        failures: Counter[str] = Counter()
        while True:
            try:
                await self._connect()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, CONNECT_ERRORS) as e:
                failures[type(e).__name__] += 1
                await asyncio.sleep(self._retry_every)
            else:
                logger.info("event listener reconnected (failed attempts: %s)", dict(failures))
                return
