"""The unit of work: one transaction, rolled back unless ``commit()`` is called."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.events import DomainEvent
from app.persistence.engine import WRITE, session_factory
from app.persistence.repositories import (
    AccountRepository,
    CatalogRepository,
    GenerationRepository,
    HoldRepository,
    IdempotencyRepository,
    LedgerRepository,
    PackPurchaseRepository,
    PaymentEventRepository,
    ReversalRepository,
    SubscriptionRepository,
)

if TYPE_CHECKING:
    from app.events.bus import EventBus


class UnitOfWork:
    accounts: AccountRepository
    subscriptions: SubscriptionRepository
    catalog: CatalogRepository
    purchases: PackPurchaseRepository
    generations: GenerationRepository
    holds: HoldRepository
    ledger: LedgerRepository
    idempotency: IdempotencyRepository
    payment_events: PaymentEventRepository
    reversals: ReversalRepository

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        write: bool,
        dialect: str,
        events: EventBus | None = None,
    ) -> None:
        self._sessions = sessions
        self._write = write
        self.dialect = dialect
        self._committed = False
        self._bus = events
        self._events: list[DomainEvent] = []

    async def __aenter__(self) -> UnitOfWork:
        self.session = self._sessions()
        if self._write:
            # Procure the connection with the write flag so SQLite begins IMMEDIATE.
            await self.session.connection(execution_options=WRITE)
        s = self.session
        row_locks = self.dialect == "postgresql"
        self.accounts = AccountRepository(s, row_locks=row_locks)
        self.subscriptions = SubscriptionRepository(s)
        self.catalog = CatalogRepository(s)
        self.purchases = PackPurchaseRepository(s, row_locks=row_locks)
        self.generations = GenerationRepository(s, row_locks=row_locks)
        self.holds = HoldRepository(s)
        self.ledger = LedgerRepository(s)
        self.idempotency = IdempotencyRepository(s)
        self.payment_events = PaymentEventRepository(s)
        self.reversals = ReversalRepository(s)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # close() rolls back whatever was not committed and keeps loaded rows readable.
        await self.session.close()

    async def flush(self) -> None:
        await self.session.flush()

    def publish(self, event: DomainEvent) -> None:
        """Queue an event; it goes out only if and after this transaction commits."""
        self._events.append(event)

    async def commit(self) -> None:
        events, self._events = self._events, []
        if events and self._bus is not None:
            await self._bus.stage(self.session, events)
        await self.session.commit()
        self._committed = True
        if events and self._bus is not None:
            self._bus.committed(events)


class Database:
    """The engine and how to open units of work on it; one per process."""

    def __init__(self, engine: AsyncEngine, events: EventBus | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.events = events
        self._sessions = session_factory(engine)

    def writing(self) -> UnitOfWork:
        return UnitOfWork(self._sessions, write=True, dialect=self.dialect, events=self.events)

    def reading(self) -> UnitOfWork:
        return UnitOfWork(self._sessions, write=False, dialect=self.dialect, events=self.events)

    async def dispose(self) -> None:
        await self.engine.dispose()
