"""Engines per backend, each set up so concurrent writers serialise per account.

PostgreSQL locks the account row (``SELECT ... FOR UPDATE``). SQLite has no row locks, so
write transactions start with ``BEGIN IMMEDIATE`` (one writer at a time, others wait on
``busy_timeout``) and WAL lets readers go on meanwhile.

Behind a transaction pooler (PgBouncer ``pool_mode = transaction``) a client connection
meets a different server connection at each transaction, so nothing asyncpg keeps per
session may be relied on: a URL with ``prepared_statement_cache_size=0`` (README,
"PgBouncer") also turns off asyncpg's own statement cache, and every asyncpg connection
names its prepared statements uniquely, so two processes sharing a server connection never
collide on asyncpg's per-process counter names.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from app.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE = {"creditgate_write": True}


def create_engine(settings: Settings) -> AsyncEngine:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(settings.database_url)
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=False,
        connect_args=asyncpg_connect_args(settings.database_url),
    )


def asyncpg_connect_args(database_url: str) -> dict[str, Any]:
    """Connection options for asyncpg that keep it correct behind a transaction pooler."""
    url = make_url(database_url)
    if url.get_driver_name() != "asyncpg":
        return {}
    args: dict[str, Any] = {"prepared_statement_name_func": unique_statement_name}
    if behind_transaction_pooler(database_url):
        # asyncpg caches (and names) its own statements too, the type introspection it
        # runs on connect among them; behind the pooler the next transaction would look
        # for them on another server connection.
        args["statement_cache_size"] = 0
    return args


def behind_transaction_pooler(database_url: str | URL) -> bool:
    """Whether the URL says a transaction pooler is in front (statement cache off).

    Then a statement outside a transaction is not safe either: the dialect prepares it in
    one round trip and runs it in the next, which the pooler may send to another server
    connection; reads open a transaction instead of running in autocommit."""
    url = make_url(database_url)
    return (
        url.get_driver_name() == "asyncpg" and url.query.get("prepared_statement_cache_size") == "0"
    )


def unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def ensure_sqlite_directory(database_url: str) -> None:
    """SQLite creates the file but not its folder (``./data/`` on a fresh clone)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_engine(database_url: str) -> AsyncEngine:
    ensure_sqlite_directory(database_url)
    engine = create_async_engine(
        database_url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    )
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN is ours to write.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("creditgate_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
