"""The unit of work: one transaction, rolled back unless ``commit()`` is called.

A unit of work for a hot use case may ride the driver lane (``Database.writing(lane=True)``,
PostgreSQL, app/persistence/driver.py): its transaction is then one asyncpg connection's and
no ORM session is opened, so only the account-state methods below work in it (lock, state,
holds, generation, tariffs, write, commit); a repository asked for fails at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager, nullcontext
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.aggregate import AccountState, WritePlan
from app.domain.errors import DatabaseUnavailable
from app.domain.events import DomainEvent
from app.domain.model import Plan
from app.domain.records import Generation
from app.persistence import outbox, plans
from app.persistence.contention import Contention
from app.persistence.driver import DriverConnection, DriverLane, _Checkout
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
from app.persistence.unavailable import is_unavailable, nothing_sent
from app.persistence.webhooks import WebhookRepository

if TYPE_CHECKING:
    from app.events.bus import EventBus

T = TypeVar("T")
# Connections tried for a lane transaction's BEGIN before the database counts as gone.
BEGIN_ATTEMPTS = 2


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
        lane: DriverLane | None = None,
        contention: Contention | None = None,
    ) -> None:
        self._sessions = sessions
        self._lane = lane
        # Runs read and written without the lock (``run_state``): None, never.
        self._contention = contention if lane is not None else None
        self._unlocked = True  # False once the account was found moved: the lock from then
        # The account's version an unlocked read saw, for ``write`` to check (None: locked).
        self._expected_version: int | None = None
        self._checkout: _Checkout | None = None
        self._driver: DriverConnection | None = None
        self._begun = False  # the lane's transaction: BEGIN sent (with the first statement)
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
        self._connection: AsyncConnection | None = None
        if self._lane is not None:
            return await self._enter_lane(self._lane)
        self.session = self._sessions()
        if self._write:
            # Procure the connection with the write flag so SQLite begins IMMEDIATE.
            try:
                self._connection = await self.session.connection(execution_options=WRITE)
            except Exception as error:
                await self._close_after(error)
                raise
        s = self.session
        row_locks = self.dialect == "postgresql"
        self.accounts = AccountRepository(s)
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

    async def _enter_lane(self, lane: DriverLane) -> UnitOfWork:
        # BEGIN waits for the first statement, so a run's BEGIN travels with its lock in one
        # round trip (``locked_state``); ``_begin`` tries another connection if need be.
        self._begun = False
        await self._check_out(lane)
        return self

    async def _check_out(self, lane: DriverLane) -> None:
        checkout = lane.acquire()
        try:
            driver = await checkout.__aenter__()
        except Exception as error:
            if is_unavailable(error):
                raise DatabaseUnavailable() from error
            raise
        self._checkout, self._driver = checkout, driver

    async def _begin(self, opening: str = "BEGIN") -> DriverConnection:
        """The transaction begun with ``opening``: BEGIN, or BEGIN and the account's lock.
        A pooled connection may have been ended by the server while idle (a failover), so
        another one is tried before giving up: after any loss for BEGIN alone, which does
        nothing; with the lock, only if the driver sent nothing (a lock lost while waiting
        answers try again, as a transaction broken later does)."""
        retry = nothing_sent if opening != "BEGIN" else is_unavailable
        await self._first_statement(lambda lane: lane.command(opening), retry)
        self._begun = True
        assert self._driver is not None
        return self._driver

    async def _first_statement(
        self,
        send: Callable[[DriverConnection], Awaitable[T]],
        retry: Callable[[BaseException], bool],
    ) -> T:
        """``send`` on the checked-out connection, before anything else of this unit of
        work: where it fails as ``retry`` allows (the connection was gone, nothing done), on
        a second connection."""
        assert self._lane is not None and self._driver is not None
        for attempt in range(BEGIN_ATTEMPTS):
            try:
                return await send(self._driver)
            except Exception as error:
                if not retry(error) or attempt == BEGIN_ATTEMPTS - 1:
                    raise
                await self._leave_lane(None)
                await self._check_out(self._lane)
        raise AssertionError("unreachable")

    async def _leave_lane(self, error: BaseException | None) -> None:
        """Roll back what was not committed, give the connection back; a lost database
        becomes DatabaseUnavailable, as on the session's path. A connection left busy by a
        statement that did not finish is closed instead (the server rolls back)."""
        checkout, driver = self._checkout, self._driver
        self._checkout = self._driver = None
        if checkout is None or driver is None:
            return
        unavailable = error is not None and is_unavailable(error)
        try:
            if self._begun and not self._committed and not driver.busy:
                try:
                    await driver.command("ROLLBACK")
                except Exception as closing:
                    if not (unavailable or is_unavailable(closing)):
                        raise
        finally:
            await checkout.__aexit__(None, None, None)
        if unavailable:
            raise DatabaseUnavailable() from error

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._lane is not None:
            await self._leave_lane(exc)
            return
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

    async def _core(self) -> AsyncConnection | DriverConnection:
        """The transaction's connection, for Core statements (kept: one per transaction)."""
        if self._driver is not None:
            if self._begun or self._expected_version is not None:
                return self._driver  # in the transaction, or outside any (an unlocked run)
            return await self._begin()
        if self._connection is None:
            self._connection = await self.session.connection()
        return self._connection

    async def lock_account(self, account_id: str) -> plans.LockedAccount | None:
        """The account row, locked first: every write to one account queues here."""
        return await plans.lock_account(await self._core(), account_id)

    async def locked_state(
        self,
        account_id: str,
        *,
        key: str | None = None,
        caps: Mapping[Plan | None, int] | None = None,
    ) -> tuple[plans.LockedAccount, AccountState] | None:
        """``lock_account`` then ``account_state``. On the lane, before anything else in
        the transaction, in two round trips instead of three: BEGIN and the lock in one
        simple query, then the state with the account's row."""
        driver = self._driver
        opening = plans.begin_locking(account_id) if driver is not None else None
        if driver is None or self._begun or opening is None:
            account = await self.lock_account(account_id)
            if account is None:
                return None
            return account, await self.account_state(account, key=key, caps=caps)
        connection = await self._begin(opening)
        return await plans.read_account_state(connection, account_id, key, caps)

    async def run_state(
        self,
        account_id: str,
        *,
        key: str | None = None,
        caps: Mapping[Plan | None, int] | None = None,
    ) -> tuple[plans.LockedAccount, AccountState] | None:
        """A run's state, in the account's turn (``Database.run_turn``): on the lane, where
        the account was not found moved lately (contention.py), read without the lock in one
        autocommit statement, and ``write`` then writes only if the account has not moved
        since (else it raises ``plans.AccountMoved``, and the state is read again here,
        under the lock); elsewhere ``locked_state``."""
        contention = self._contention
        if (
            contention is None
            or not self._unlocked
            or self._begun
            or not contention.may_go_unlocked(account_id)
        ):
            return await self.locked_state(account_id, key=key, caps=caps)
        # A read has no effect: a connection the server ended is replaced once.
        found = await self._first_statement(
            lambda lane: plans.read_account_state(lane, account_id, key, caps), is_unavailable
        )
        if found is not None:
            self._expected_version = found[0].version
        return found

    async def account_state(
        self,
        account: plans.LockedAccount,
        *,
        key: str | None = None,
        generation_id: str | None = None,
        caps: Mapping[Plan | None, int] | None = None,
    ) -> AccountState:
        """The rest of the locked account's state, in one statement; its active runs are
        counted where ``caps`` can apply (a run's), else read as 0."""
        connection = await self._core()
        return await plans.read_state(
            connection, account, key=key, generation_id=generation_id, caps=caps
        )

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

    async def generation(self, generation_id: str) -> Generation | None:
        """One generation as recorded (a replayed run answers with it)."""
        return await plans.generation(await self._core(), generation_id)

    async def tariffs(self) -> list[tuple[str, int]]:
        """Each tool and its price, read in this transaction."""
        return await plans.tariffs(await self._core())

    async def write(self, plan: WritePlan, webhooks: Sequence[outbox.EventRow] = ()) -> None:
        """Write a plan and its outbox rows: on PostgreSQL one statement, its notification
        included."""
        notify = self._bus.notifications(plan.events) if self._bus is not None else None
        expected, self._expected_version = self._expected_version, None
        if expected is None:
            await plans.write_plan(await self._core(), plan, notify, webhooks)
        else:
            assert self._driver is not None and not self._begun
            try:
                await plans.write_plan(
                    self._driver, plan, notify, webhooks, expected_version=expected
                )
            except plans.AccountMoved:
                self._unlocked = False
                if self._contention is not None:
                    self._contention.moved(plan.account_id)
                raise
        (self._events if notify is None else self._sent).extend(plan.events)
        self._outbox_written = self._outbox_written or bool(webhooks)

    async def add_webhook_events(
        self, rows: Sequence[outbox.EventRow], ledger_ids: Sequence[int], now: datetime
    ) -> None:
        """Outbox rows for what this transaction wrote through the ORM (flushed first)."""
        if not rows:
            return
        await self.session.flush()
        connection = await self._core()
        assert isinstance(connection, AsyncConnection)  # the ORM's writes: never the lane
        await outbox.insert_events(connection, rows, ledger_ids, now)
        self._outbox_written = True

    def publish(self, event: DomainEvent) -> None:
        """Queue an event; it goes out only if and after this transaction commits."""
        self._events.append(event)

    async def commit(self) -> None:
        if self._driver is not None:
            await self._commit_lane(self._driver)
            return
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

    async def _commit_lane(self, driver: DriverConnection) -> None:
        events, self._events = self._events, []
        notify = self._bus.notifications(events) if events and self._bus is not None else None
        if notify is not None:
            if not self._begun:
                driver = await self._begin()
            await plans.notify(driver, *notify)
        if self._begun:  # else nothing was sent: nothing to commit
            await driver.command("COMMIT")
        self._committed = True
        sent, self._sent = self._sent + events, []
        if sent and self._bus is not None:
            self._bus.committed(sent)
        if self._outbox_written and self._on_outbox is not None:
            self._outbox_written = False
            self._on_outbox()


class Database:
    """The engine and how to open units of work on it; one per process."""

    def __init__(
        self,
        engine: AsyncEngine,
        events: EventBus | None = None,
        lane: DriverLane | None = None,
        *,
        unlocked_runs: bool = True,
    ) -> None:
        self.engine = engine
        # Called after a commit that wrote outbox rows (the delivery worker's doorbell).
        self.on_outbox: Callable[[], None] | None = None
        self.dialect = engine.dialect.name
        self.events = events
        # The driver lane (PostgreSQL only): the account reads, and the writes that ask.
        self.lane = lane if self.dialect == "postgresql" else None
        # Runs written without the lock, a process's runs of one account taking turns: on the
        # lane, in autocommit (behind a transaction pooler every statement keeps its
        # transaction, so runs take the lock there).
        self.contention = (
            Contention()
            if unlocked_runs and self.lane is not None and not self.lane.reads_in_transaction
            else None
        )
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
            if self.lane is not None:
                return await self._read_on_lane(
                    self.lane, lambda connection: plans.stored_accounts(connection, ids)
                )
            async with self._reads.connect() as connection:
                return await plans.stored_accounts(connection, ids)
        except Exception as error:
            if is_unavailable(error):
                raise DatabaseUnavailable() from error
            raise

    async def tariffs(self) -> list[tuple[str, int]]:
        """Each tool and its price, in one statement outside any write."""
        try:
            if self.lane is not None:
                return await self._read_on_lane(self.lane, plans.tariffs)
            async with self._reads.connect() as connection:
                return await plans.tariffs(connection)
        except Exception as error:
            if is_unavailable(error):
                raise DatabaseUnavailable() from error
            raise

    @staticmethod
    async def _read_on_lane(
        lane: DriverLane, read: Callable[[DriverConnection], Awaitable[T]]
    ) -> T:
        """One read statement on the lane: in autocommit, or behind a pooler in a
        transaction of its own (engine.py, behind_transaction_pooler); tried on a second
        connection when the first turns out to be gone."""
        for attempt in range(BEGIN_ATTEMPTS):
            try:
                async with lane.acquire() as connection:
                    if not lane.reads_in_transaction:
                        return await read(connection)
                    await connection.command("BEGIN")
                    found = await read(connection)
                    await connection.command("ROLLBACK")
                    return found
            except Exception as error:
                # A read has no effect: a connection the server ended is replaced once.
                if not is_unavailable(error) or attempt == BEGIN_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def run_turn(self, account_id: str) -> AbstractAsyncContextManager[None]:
        """A run's turn among this process's runs of the account, taken before its unit of
        work (contention.py); where runs always take the lock, no wait: the lock is the
        queue."""
        if self.contention is None:
            return nullcontext()
        return self.contention.turn(account_id)

    def writing(self, *, lane: bool = False) -> UnitOfWork:
        """A write transaction; ``lane`` asks for the driver lane, where there is one (the
        use case then touches only the account-state methods, see the module's docstring)."""
        return UnitOfWork(
            self._sessions,
            write=True,
            dialect=self.dialect,
            events=self.events,
            on_outbox=self.on_outbox,
            lane=self.lane if lane else None,
            contention=self.contention,
        )

    def reading(self) -> UnitOfWork:
        return UnitOfWork(self._sessions, write=False, dialect=self.dialect, events=self.events)

    @contextmanager
    def recording(self, *, transactions: bool = True) -> Iterator[list[str]]:
        """Every statement this database is sent meanwhile, on either path, as its text;
        with ``transactions``, each BEGIN and COMMIT too (round trips: tests, the bench)."""
        sent: list[str] = []

        def statement(_conn: Any, _cursor: Any, text: str, *_args: Any) -> None:
            sent.append(" ".join(text.split()))

        def on_lane(text: str) -> None:
            if transactions or text not in ("BEGIN", "COMMIT", "ROLLBACK"):
                sent.append(" ".join(text.split()))

        listeners: list[tuple[str, Callable[..., Any]]] = [("before_cursor_execute", statement)]
        if transactions:
            listeners += [("begin", lambda _c: sent.append("BEGIN"))]
            listeners += [("commit", lambda _c: sent.append("COMMIT"))]
        engine = self.engine.sync_engine
        for name, listener in listeners:
            event.listen(engine, name, listener)
        if self.lane is not None:
            self.lane.listeners.append(on_lane)
        try:
            yield sent
        finally:
            for name, listener in listeners:
                event.remove(engine, name, listener)
            if self.lane is not None:
                self.lane.listeners.remove(on_lane)

    async def dispose(self) -> None:
        if self.lane is not None:
            await self.lane.close()
        await self.engine.dispose()
