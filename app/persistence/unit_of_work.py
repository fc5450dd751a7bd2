"""The unit of work: one transaction, rolled back unless ``commit()`` is called."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.aggregate import AccountState, WritePlan
from app.domain.errors import DatabaseUnavailable
from app.domain.events import DomainEvent
from app.persistence import outbox, plans
from app.persistence.engine import WRITE, behind_transaction_pooler, session_factory
from app.persistence.repositories import (
    AccountRepository,
    AdjustmentRepository,
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
from app.persistence.unavailable import is_unavailable
from app.persistence.webhooks import WebhookRepository

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
    webhooks: WebhookRepository
    adjustments: AdjustmentRepository

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        write: bool,
        dialect: str,
        events: EventBus | None = None,
        on_outbox: Callable[[], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._on_outbox = on_outbox
        self._outbox_written = False
        self._write = write
        self.dialect = dialect
        self._committed = False
        self._bus = events
        self._events: list[DomainEvent] = []
        # Events a plan's statement already sent (pg_notify); handed on after commit only.
        self._sent: list[DomainEvent] = []

    async def __aenter__(self) -> UnitOfWork:
        self.session = self._sessions()
        self._connection: AsyncConnection | None = None
        if self._write:
            # Procure the connection with the write flag so SQLite begins IMMEDIATE.
            try:
                self._connection = await self.session.connection(execution_options=WRITE)
            except Exception as error:
                await self._close_after(error)
                raise
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
        self.webhooks = WebhookRepository(s, row_locks=row_locks)
        self.adjustments = AdjustmentRepository(s)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            await self._close_after(exc)
            return
        # close() rolls back whatever was not committed and keeps loaded rows readable.
        await self.session.close()

    async def _close_after(self, error: BaseException) -> None:
        """Close after a failure; a lost database becomes DatabaseUnavailable, here only."""
        unavailable = is_unavailable(error)
        try:
            await self.session.close()
        except Exception as closing:
            if not (unavailable or is_unavailable(closing)):
                raise
        if unavailable:
            # The transaction may or may not have committed (a break during COMMIT): the
            # caller's idempotency key tells, when it tries again.
            raise DatabaseUnavailable() from error

    async def flush(self) -> None:
        await self.session.flush()

    async def _core(self) -> AsyncConnection:
        """The transaction's connection, for Core statements (kept: one per transaction)."""
        if self._connection is None:
            self._connection = await self.session.connection()
        return self._connection

    async def lock_account(self, account_id: str) -> plans.LockedAccount | None:
        """The account row, locked first: every write to one account queues here."""
        return await plans.lock_account(await self._core(), account_id)

    async def account_state(
        self,
        account: plans.LockedAccount,
        *,
        key: str | None = None,
        generation_id: str | None = None,
    ) -> AccountState:
        """The rest of the locked account's state, in one statement."""
        connection = await self._core()
        return await plans.read_state(connection, account, key=key, generation_id=generation_id)

    async def lock_owner_of_generation(self, generation_id: str) -> plans.LockedAccount | None:
        """The account of a generation, locked first (None: no such generation)."""
        return await plans.lock_owner_of_generation(await self._core(), generation_id)

    async def lock_owner_of_purchase(self, purchase_id: str) -> plans.LockedAccount | None:
        """The account of a purchase, locked first (None: no such purchase)."""
        return await plans.lock_owner_of_purchase(await self._core(), purchase_id)

    async def ending_state(
        self, account: plans.LockedAccount, generation_id: str
    ) -> plans.EndingState:
        """The locked account's state, the generation locked next, its open holds: one
        statement."""
        return await plans.read_ending_state(await self._core(), account, generation_id)

    async def settling_state(
        self, account: plans.LockedAccount, purchase_id: str
    ) -> plans.SettlingState:
        """The locked account's state, the purchase locked next, its pack: one statement."""
        return await plans.read_settling_state(await self._core(), account, purchase_id)

    async def write(self, plan: WritePlan, webhooks: Sequence[outbox.EventRow] = ()) -> None:
        """Write a plan and its outbox rows: on PostgreSQL one statement, its notification
        included."""
        notify = self._bus.notifications(plan.events) if self._bus is not None else None
        await plans.write_plan(await self._core(), plan, notify, webhooks)
        (self._events if notify is None else self._sent).extend(plan.events)
        self._outbox_written = self._outbox_written or bool(webhooks)

    async def add_webhook_events(
        self, rows: Sequence[outbox.EventRow], ledger_ids: Sequence[int], now: datetime
    ) -> None:
        """Outbox rows for what this transaction wrote through the ORM (flushed first)."""
        if not rows:
            return
        await self.session.flush()
        await outbox.insert_events(await self._core(), rows, ledger_ids, now)
        self._outbox_written = True

    def publish(self, event: DomainEvent) -> None:
        """Queue an event; it goes out only if and after this transaction commits."""
        self._events.append(event)

    async def commit(self) -> None:
        events, self._events = self._events, []
        if events and self._bus is not None:
            await self._bus.stage(self.session, events)
        await self.session.commit()
        self._committed = True
        self._connection = None
        events, self._sent = self._sent + events, []
        if events and self._bus is not None:
            self._bus.committed(events)
        if self._outbox_written and self._on_outbox is not None:
            self._outbox_written = False
            self._on_outbox()  # wakes this process's delivery worker


class Database:
    """The engine and how to open units of work on it; one per process."""

    def __init__(self, engine: AsyncEngine, events: EventBus | None = None) -> None:
        self.engine = engine
        # Called after a commit that wrote outbox rows (the delivery worker's doorbell).
        self.on_outbox: Callable[[], None] | None = None
        self.dialect = engine.dialect.name
        self.events = events
        self._sessions = session_factory(engine)
        # Reads of one statement need no transaction on PostgreSQL: no BEGIN, no ROLLBACK.
        # SQLite keeps its BEGIN (the driver's transaction control is ours, see engine.py),
        # and so does PostgreSQL behind a transaction pooler (see behind_transaction_pooler).
        autocommit = self.dialect == "postgresql" and not behind_transaction_pooler(engine.url)
        self._reads = (
            engine.execution_options(isolation_level="AUTOCOMMIT") if autocommit else engine
        )

    async def stored_accounts(self, ids: Sequence[str]) -> list[plans.StoredAccount]:
        """Accounts with their subscriptions, in one autocommit statement."""
        try:
            async with self._reads.connect() as connection:
                return await plans.stored_accounts(connection, ids)
        except Exception as error:
            if is_unavailable(error):
                raise DatabaseUnavailable() from error
            raise

    def writing(self) -> UnitOfWork:
        return UnitOfWork(
            self._sessions,
            write=True,
            dialect=self.dialect,
            events=self.events,
            on_outbox=self.on_outbox,
        )

    def reading(self) -> UnitOfWork:
        return UnitOfWork(self._sessions, write=False, dialect=self.dialect, events=self.events)

    async def dispose(self) -> None:
        await self.engine.dispose()
