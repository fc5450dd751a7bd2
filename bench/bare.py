"""The strict reference: a bare Starlette endpoint doing only the essential SQL.

No GraphQL, no auth, no services, no ORM, no ledger: SQLAlchemy Core on the same database
(asyncpg on PostgreSQL, autocommit), one statement per request. The reads are the one-row
read of the account (the editor's balances; the dashboard's balances and subscription);
the run is a conditional debit, ``UPDATE ... SET balance = balance - cost WHERE balance >=
cost``. The debit goes to a table of its own (``bare_balances``, copied from the accounts
at start), so the ledger of the accounts creditgate writes stays their balances' sum. What
creditgate does on top (the rules, the ledger, holds, idempotency, events, GraphQL) is what
the ratio to this endpoint measures.

    python -m bench.bare --port 8102   # reads CREDITGATE_DATABASE_URL, _DB_POOL_SIZE
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import sqlalchemy as sa
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.runtime import settle_heap

EDITOR = sa.text("SELECT subscription_balance, pack_balance FROM accounts WHERE id = :id")
DASHBOARD = sa.text(
    "SELECT a.subscription_balance, a.pack_balance, a.cycle_ends_at, s.plan, s.interval,"
    " s.monthly_credits, s.started_at, s.canceled_at FROM accounts a"
    " LEFT JOIN subscriptions s ON s.id = a.subscription_id WHERE a.id = :id"
)
DEBIT = sa.text(
    "UPDATE bare_balances SET balance = balance - :cost WHERE id = :id AND balance >= :cost"
    " RETURNING balance"
)
SETUP = [
    "CREATE TABLE IF NOT EXISTS bare_balances (id VARCHAR(36) PRIMARY KEY,"
    " balance INTEGER NOT NULL CHECK (balance >= 0))",
    "INSERT INTO bare_balances (id, balance) SELECT id, subscription_balance + pack_balance"
    " FROM accounts WHERE true ON CONFLICT (id) DO NOTHING",
]
COST = 1  # BACKGROUND_REMOVAL's tariff, as the bench's runGenerator


def _iso(moment: object) -> object:
    # Text SQL gets SQLite's stored text as it is, PostgreSQL's datetimes as datetimes.
    return moment.isoformat() if isinstance(moment, datetime) else moment


def _engine(database_url: str, pool_size: int) -> AsyncEngine:
    if database_url.startswith("sqlite"):
        return create_async_engine(database_url, connect_args={"timeout": 30})
    return create_async_engine(
        database_url, pool_size=pool_size, max_overflow=0, isolation_level="AUTOCOMMIT"
    )


def create_bare_app(database_url: str, pool_size: int) -> Starlette:
    engine = _engine(database_url, pool_size)

    async def read(request: Request) -> JSONResponse:
        body = await request.json()
        shape = request.path_params["shape"]
        statement = EDITOR if shape == "editor" else DASHBOARD
        async with engine.connect() as conn:
            row = (await conn.execute(statement, {"id": body.get("accountId", "")})).first()
        if row is None:
            return JSONResponse({"error": "NOT_FOUND"}, status_code=404)
        if shape == "editor":
            return JSONResponse({"me": {"creditsTotal": row[0] + row[1]}})
        return JSONResponse(
            {
                "me": {
                    "subscriptionBalance": row[0],
                    "packBalance": row[1],
                    "nextRenewalAt": _iso(row[2]),
                    "subscription": {
                        "plan": row[3],
                        "interval": row[4],
                        "monthlyCredits": row[5],
                        "startedAt": _iso(row[6]),
                        "canceledAt": _iso(row[7]),
                    },
                }
            }
        )

    async def run(request: Request) -> JSONResponse:
        body = await request.json()
        debit = {"id": body.get("accountId", ""), "cost": COST}
        async with engine.begin() as conn:
            row = (await conn.execute(DEBIT, debit)).first()
        if row is None:
            return JSONResponse({"runGenerator": {"message": "Insufficient credits."}})
        return JSONResponse({"runGenerator": {"account": {"creditsTotal": row[0]}}})

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            for statement in SETUP:
                await conn.execute(sa.text(statement))
        yield
        await engine.dispose()

    app = Starlette(
        routes=[
            Route("/read/{shape:str}", read, methods=["POST"]),
            Route("/run", run, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.engine = engine
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_bare_app(
        os.environ["CREDITGATE_DATABASE_URL"], int(os.environ.get("CREDITGATE_DB_POOL_SIZE", "16"))
    )
    settle_heap()
    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
