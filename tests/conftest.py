"""Fixtures: a migrated database per backend, a clock tests can move, and an API client.

Every test that uses ``database_url`` runs on SQLite (a real file) and, when
``CREDITGATE_TEST_POSTGRES_URL`` is set, on PostgreSQL in a database of its own. Tests
marked ``pgbouncer`` run on PostgreSQL a second time with the request pool through a real
PgBouncer in transaction pooling mode (tests/pgbouncer.py) and the event listener on a
direct connection: the ``pgbouncer`` backend (``database_url``), or the ``pgbouncer`` route
of ``gateways``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.clock import FrozenClock
from app.main import create_app
from app.persistence.migrate import upgrade
from app.settings import Settings
from tests.api_client import Api
from tests.db import Rows
from tests.pgbouncer import PgBouncer, running_pgbouncer
from tests.processes import Gateways
from tests.stock_comparison import StockComparison, comparing_with_stock

POSTGRES_URL = os.environ.get("CREDITGATE_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", "postgres"] if POSTGRES_URL else ["sqlite"]
JWT_SECRET = "test-secret-0123456789abcdef0123456789"
# Tables that tests write; the catalog seeded by migrations stays.
WRITTEN_TABLES = [
    "webhook_deliveries",
    "webhook_events",
    "webhook_endpoints",
    "payment_events",
    "purchase_reversals",
    "ledger_entries",
    "holds",
    "idempotency_keys",
    "generations",
    "credit_adjustments",
    "pack_purchases",
    "subscriptions",
    "accounts",
]
T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
# Production refuses the sandbox: Stripe test keys, pointed at nothing unless a test says.
PRODUCTION_PAYMENTS = {
    "payment_provider": "stripe",
    "stripe_secret_key": "sk_test_creditgate",
    "stripe_webhook_secret": "whsec_creditgate_test",
    "stripe_api_base": "http://127.0.0.1:9",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    through_pgbouncer = POSTGRES_URL and metafunc.definition.get_closest_marker("pgbouncer")
    chosen = {
        name.strip()
        for mark in metafunc.definition.iter_markers("parametrize")
        for name in (mark.args[0].split(",") if isinstance(mark.args[0], str) else mark.args[0])
    }
    if "database_url" in chosen:
        return
    if "database_url" in metafunc.fixturenames:
        backends = [*BACKENDS, "pgbouncer"] if through_pgbouncer else BACKENDS
        metafunc.parametrize("database_url", backends, indirect=True)
    elif "gateways" in metafunc.fixturenames and through_pgbouncer:
        metafunc.parametrize("postgres_route", ["direct", "pgbouncer"], indirect=True)


def _backend(request: pytest.FixtureRequest) -> str:
    """sqlite, postgres or pgbouncer: how this test reaches its database."""
    params = getattr(request.node, "callspec", None)
    chosen = params.params if params else {}
    if chosen.get("database_url") == "pgbouncer" or chosen.get("postgres_route") == "pgbouncer":
        return "pgbouncer"
    return str(chosen.get("database_url", "postgres"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if POSTGRES_URL:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: set CREDITGATE_TEST_POSTGRES_URL")
    for item in items:
        if item.get_closest_marker("postgres_only"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def stock_comparison() -> Iterator[StockComparison]:
    with comparing_with_stock() as comparison:
        yield comparison


@pytest.fixture(autouse=True)
def answers_match_stock_strawberry(
    request: pytest.FixtureRequest, stock_comparison: StockComparison
) -> Iterator[None]:
    """Each query a test sends is answered again by stock Strawberry (tests/stock_comparison.py);
    a different answer fails that test."""
    before = len(stock_comparison.mismatches)
    stock_comparison.paused = request.node.get_closest_marker("no_stock_replay") is not None
    yield
    stock_comparison.paused = False
    mismatches = stock_comparison.mismatches[before:]
    assert not mismatches, "the gateway and stock Strawberry disagree:\n" + "\n".join(mismatches)


def _admin_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    assert POSTGRES_URL
    name = f"creditgate_test_{uuid.uuid4().hex[:10]}"
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    _run_admin(POSTGRES_URL, f'CREATE DATABASE "{name}"')
    try:
        upgrade(url)
        yield url
    finally:
        _run_admin(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run_admin(url: str, statement: str) -> None:
    import asyncio

    import asyncpg

    parts = make_url(url)

    async def run() -> None:
        conn = await asyncpg.connect(
            host=parts.host,
            port=parts.port,
            user=parts.username,
            password=parts.password,
            database=parts.database,
        )
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "creditgate.sqlite3"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL the app's request pool connects to (parametrized in pytest_generate_tests)."""
    if request.param == "sqlite":
        path = tmp_path / "creditgate.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    if request.param == "pgbouncer":
        bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
        return bouncer.url_for(url)
    return url


@pytest.fixture(scope="session")
def pgbouncer(postgres_database: str) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode in front of the session's PostgreSQL."""
    with running_pgbouncer(postgres_database) as bouncer:
        yield bouncer


@pytest.fixture
def postgres_route(request: pytest.FixtureRequest) -> str:
    """direct, or pgbouncer: how the request pools of ``gateways`` reach PostgreSQL."""
    return str(getattr(request, "param", "direct"))


@pytest.fixture
def events_database_url(request: pytest.FixtureRequest) -> str | None:
    """The direct URL the event listener needs when the request pool goes through PgBouncer."""
    if _backend(request) != "pgbouncer":
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """The session's PostgreSQL database, emptied; for tests marked ``postgres_only``."""
    _run_admin(postgres_database, f"TRUNCATE {', '.join(WRITTEN_TABLES)} RESTART IDENTITY CASCADE")
    return postgres_database


@pytest.fixture
def gateways(
    request: pytest.FixtureRequest,
    postgres_url: str,
    postgres_route: str,
    events_database_url: str | None,
    tmp_path: Path,
) -> Iterator[Gateways]:
    """Starts ``creditgate serve`` processes on ``postgres_url`` (through PgBouncer on the
    ``pgbouncer`` route); stops them all afterwards."""
    pool_url = postgres_url
    if postgres_route == "pgbouncer":
        assert events_database_url
        bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
        pool_url = bouncer.url_for(postgres_url)
    with Gateways(
        pool_url, JWT_SECRET, tmp_path, events_database_url=events_database_url
    ) as started:
        yield started


@pytest.fixture
async def postgres_rows(postgres_url: str) -> AsyncIterator[Rows]:
    """Rows of ``postgres_url`` read by the test itself, beside the server processes."""
    engine = create_async_engine(postgres_url, poolclass=NullPool)
    yield Rows(engine)
    await engine.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def settings(database_url: str, events_database_url: str | None) -> Settings:
    return Settings(
        _env_file=None,
        env="test",
        database_url=database_url,
        events_database_url=events_database_url,
        jwt_secret=JWT_SECRET,
        starter_monthly_credits=1000,
        pro_monthly_credits=4000,
        # Off unless a test is about them: a test may make many calls from one account.
        rate_limits_enabled=False,
        starter_max_active_generations=0,
        pro_max_active_generations=0,
    )


@pytest.fixture
async def app(settings: Settings, clock: FrozenClock) -> AsyncIterator[object]:
    application = create_app(settings, clock)
    yield application
    await application.state.services.db.dispose()


@pytest.fixture
async def api(app: object, clock: FrozenClock) -> AsyncIterator[Api]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield Api(client, JWT_SECRET, clock)


@pytest.fixture
def rows(app: object) -> Rows:
    return Rows(app.state.services.db.engine)  # type: ignore[attr-defined]


ApiFactory = Callable[..., Awaitable[Api]]


@pytest.fixture
async def make_api(settings: Settings, clock: FrozenClock) -> AsyncIterator[ApiFactory]:
    """Build an app on the same database with some settings changed, and a client for it.

    ``client`` is the (host, port) the app sees as the caller, for per-IP rules.
    """
    opened: list[tuple[Any, httpx.AsyncClient]] = []

    async def build(*, client: tuple[str, int] = ("127.0.0.1", 50000), **changes: Any) -> Api:
        if changes.get("env") == "production":
            changes = {**PRODUCTION_PAYMENTS, **changes}
        changed = Settings(_env_file=None, **{**settings.model_dump(), **changes})
        application = create_app(changed, clock)
        transport = httpx.ASGITransport(app=application, client=client)
        http = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        opened.append((application, http))
        return Api(http, JWT_SECRET, clock, app=application)

    yield build
    for application, http in opened:
        await http.aclose()
        await application.state.services.payments.aclose()
        await application.state.services.db.dispose()
        if application.state.rate_limiter is not None:
            await application.state.rate_limiter.aclose()
        await application.state.persisted_queries.aclose()
