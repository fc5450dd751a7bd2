"""The driver lane: the hot statements on asyncpg itself, compiled once from their Core form.

Per execution SQLAlchemy's async engine looks the statement up in its compiled cache, builds
its parameters, runs the driver call through a greenlet hand-off, and wraps the cursor in a
result; its pool checks a connection out and in through its events. Measured on this
machine, the account read cost 0.17 ms of CPU that way and 0.047 ms straight on asyncpg: for
the editor's read, more than the whole bare endpoint it is compared with (bench/README.md).

So on PostgreSQL the statements of the hot paths (the account reads; a run's lock, state and
plan) keep their Core definitions over the SQLModel tables, are compiled once per statement
with the engine's own dialect, and are executed on a pool of asyncpg connections of their
own (sized like the engine's). What the lane does not do, it refuses rather than
approximates: no ORM, no executemany, no types whose bind values need converting beyond what
asyncpg does itself (checked at compile time). Results come back as asyncpg records read by
attribute, like SQLAlchemy's rows.

The lane is fenced like the GraphQL fast paths: it runs at the SQLAlchemy and asyncpg
versions pinned in ``pyproject.toml`` only, ``CREDITGATE_DRIVER_LANE=false`` turns it off,
and a test runs every lane statement both ways and compares the rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import ARRAY
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from app.persistence.engine import behind_transaction_pooler
from app.pins import Installed, fence_open, installed_version

# The versions the lane was built and measured on (pyproject.toml pins them exactly).
PINNED: Mapping[str, str] = {"sqlalchemy": "2.1.9", "asyncpg": "0.32.0"}


def lane_enabled(wanted: bool, installed: Installed = installed_version) -> bool:
    """Whether the lane may run: ``wanted`` (the setting) and the pinned versions installed."""
    return fence_open("driver lane", "CREDITGATE_DRIVER_LANE", wanted, PINNED, installed)


class Row(asyncpg.Record):
    """A record whose columns read as attributes, as SQLAlchemy's rows do."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Result:
    """The rows of one execution, with the few SQLAlchemy ``Result`` methods the hot paths use."""

    __slots__ = ("_rows",)

    def __init__(self, rows: list[Row]) -> None:
        self._rows = rows

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)

    def first(self) -> Row | None:
        return self._rows[0] if self._rows else None

    def all(self) -> list[Row]:
        return self._rows


@dataclass(frozen=True, slots=True)
class Compiled:
    """A statement as the dialect renders it: its text and where each parameter goes."""

    sql: str
    names: tuple[str, ...]  # the parameter of each $n, in order
    defaults: Mapping[str, Any]  # the statement's own literal values

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        defaults = self.defaults
        return [params[n] if n in params else defaults[n] for n in self.names]


_SAFE_BIND_TYPES = (str, int, bool, datetime, list, type(None))


def compile_for_driver(statement: ClauseElement, dialect: Dialect) -> Compiled:
    """Render ``statement`` once; refuse one whose parameters need a bind processor."""
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    if "POSTCOMPILE" in compiled.string:
        raise TypeError("the driver lane cannot run a statement rendered per execution")
    names = tuple(compiled.positiontup or ())
    for name in set(names):
        type_ = compiled.binds[name].type
        processor = type_.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None and not _binds_as_asyncpg_does(type_, dialect):
            raise TypeError(f"the driver lane cannot bind {name!r}: its type converts values")
    defaults = {
        name: bind.value
        for name, bind in compiled.binds.items()
        if bind.value is not None and isinstance(bind.value, _SAFE_BIND_TYPES)
    }
    return Compiled(compiled.string, names, defaults)


def _binds_as_asyncpg_does(type_: Any, dialect: Dialect) -> bool:
    """Whether the type's bind conversion changes nothing asyncpg would not do itself.

    UTCDateTime's on PostgreSQL checks awareness and converts to UTC, which asyncpg does for
    any aware datetime, and the domain hands only aware ones (app/clock.py). An ARRAY's
    turns a sequence into a list and converts each item by the item's own type: the lane
    passes lists, so items that need nothing need nothing either."""
    from app.persistence.types import UTCDateTime

    if isinstance(type_, UTCDateTime):
        return True
    if isinstance(type_, ARRAY):
        item = type_.item_type
        return item.dialect_impl(dialect).bind_processor(dialect) is None
    return False


class Statements:
    """Each statement compiled once, by identity (the hot ones are module constants)."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._compiled: dict[int, tuple[ClauseElement, Compiled]] = {}

    def __getitem__(self, statement: ClauseElement) -> Compiled:
        found = self._compiled.get(id(statement))
        if found is None:
            # The statement is kept with its compiled form, so its id is never reused.
            found = (statement, compile_for_driver(statement, self._dialect))
            self._compiled[id(statement)] = found
        return found[1]


Listener = Callable[[str], None]


class DriverConnection:
    """One pooled asyncpg connection, executing Core statements like ``AsyncConnection``."""

    __slots__ = ("_connection", "_listeners", "_statements", "busy", "dialect")

    def __init__(
        self,
        connection: asyncpg.Connection,
        statements: Statements,
        dialect: Dialect,
        listeners: Sequence[Listener],
    ) -> None:
        self._connection = connection
        self._statements = statements
        self._listeners = listeners
        self.dialect = dialect
        # True from the start of an operation to its end: left True by one that raised or
        # was cancelled half-way, whose connection may still be busy with it (never reused).
        self.busy = False

    async def execute(self, statement: ClauseElement, params: Mapping[str, Any]) -> Result:
        if not isinstance(params, Mapping):
            raise TypeError("the driver lane runs one parameter set per statement")
        compiled = self._statements[statement]
        for listener in self._listeners:
            listener(compiled.sql)
        self.busy = True
        rows = await self._connection.fetch(
            compiled.sql, *compiled.arguments(params), record_class=Row
        )
        self.busy = False
        return Result(rows)

    async def command(self, sql: str) -> None:
        """BEGIN, COMMIT or ROLLBACK: one simple query."""
        for listener in self._listeners:
            listener(sql)
        self.busy = True
        await self._connection.execute(sql)
        self.busy = False


class LanePool:
    """The lane's connections: at most ``size`` open, idle ones reused last-in first-out.

    asyncpg's own pool costs a checkout about 20 us of CPU (measured on this machine: an
    ``asyncio.shield`` task per release, the connection proxy's wrapped methods), a tenth of
    the editor's whole read. The lane needs none of what that buys: it sets no session state
    (nothing to reset), ends every transaction before release, and closes a connection that
    broke or was left busy rather than repair it (``_Checkout``). So its pool is a stack of
    idle connections and a semaphore of slots: a checkout with a connection idle is a pop.
    """

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], size: int) -> None:
        self._connect = connect
        self._slots = asyncio.Semaphore(size)  # connections checked out, at most ``size``
        self._idle: list[asyncpg.Connection] = []
        self._closed = False

    async def acquire(self) -> asyncpg.Connection:
        """A connection of this pool's own; an idle one if any, else a new one (a failover
        formation's URL finds the primary as the engine would: ``create_connect_args``)."""
        if self._closed:
            raise asyncpg.InterfaceError("the driver lane is closed")
        await self._slots.acquire()
        try:
            idle = self._idle
            while idle:
                connection = idle.pop()
                if not connection.is_closed():
                    return connection
            return await self._connect()
        except BaseException:
            self._slots.release()
            raise

    def release(self, connection: asyncpg.Connection) -> None:
        """Back to the idle stack: only a connection with nothing running, no transaction."""
        if self._closed or connection.is_closed():
            connection.terminate()
        else:
            self._idle.append(connection)
        self._slots.release()

    def discard(self, connection: asyncpg.Connection) -> None:
        """Closed at once (a broken or busy connection is never reused); its slot is free."""
        connection.terminate()
        self._slots.release()

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            try:
                await asyncio.wait_for(connection.close(), 2)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                connection.terminate()


class DriverLane:
    """The lane's pool, opened on first use (tests and scripts never serve a lifespan)."""

    def __init__(self, url: str | URL, dialect: Dialect, pool_size: int) -> None:
        self._url = make_url(url)
        self._dialect = dialect
        self._pool_size = pool_size
        self._pool: LanePool | None = None
        self.statements = Statements(dialect)
        # Reads of one statement open a transaction behind a pooler (engine.py says why).
        self.reads_in_transaction = behind_transaction_pooler(self._url)
        # Who is told every statement sent (the round-trip counts of tests and the bench).
        self.listeners: list[Listener] = []

    def _open(self) -> LanePool:
        if self._pool is None:
            # The dialect's own translation of the URL: hosts (several, for a failover
            # formation), credentials, ssl and timeouts, as the engine connects.
            args, kwargs = self._dialect.create_connect_args(self._url)
            kwargs.pop("prepared_statement_cache_size", None)
            if self.reads_in_transaction:
                # asyncpg's own statement cache off, as the engine's (engine.py); without
                # it, statements are unnamed and live in their transaction only. (Named
                # statements are the dialect's business: asyncpg's cache names its own per
                # connection, which behind no pooler is one server connection.)
                kwargs["statement_cache_size"] = 0
            self._pool = LanePool(lambda: asyncpg.connect(*args, **kwargs), self._pool_size)
        return self._pool

    def acquire(self) -> _Checkout:
        return _Checkout(self)

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


class _Checkout:
    """``async with lane.acquire() as conn``: a connection, back to the pool after; one that
    broke, was left busy by an operation that did not finish (an error, a cancellation) or
    left a transaction open is closed rather than reused."""

    __slots__ = ("_driver", "_lane", "_pool", "_raw")

    def __init__(self, lane: DriverLane) -> None:
        self._lane = lane

    async def __aenter__(self) -> DriverConnection:
        lane = self._lane
        self._pool = lane._open()
        self._raw: asyncpg.Connection = await self._pool.acquire()
        self._driver = DriverConnection(self._raw, lane.statements, lane._dialect, lane.listeners)
        return self._driver

    async def __aexit__(self, *exc: object) -> None:
        raw = self._raw
        if self._driver.busy or raw.is_closed() or raw.is_in_transaction():
            self._pool.discard(raw)
        else:
            self._pool.release(raw)
