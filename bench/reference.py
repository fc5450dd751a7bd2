"""The reference: the same database work as the GraphQL operations, without GraphQL or auth.

Each endpoint calls the very service function the resolver calls (``load_accounts`` behind
the account loader, ``run_generator``), on a ``Services`` built from the same settings, so
queries, transaction, account lock, ledger rows and pool are identical by construction. What
the benchmark's ratio measures is then only what creditgate adds: HTTP body parsing of a
GraphQL request, the token, Strawberry's execution and its JSON result.

    python -m bench.reference --port 8101   # reads the same CREDITGATE_* environment
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.domain.accounts import AccountView
from app.domain.errors import CreditError
from app.domain.model import Tool
from app.main import build_services
from app.runtime import settle_heap
from app.services.accounts import load_accounts
from app.services.generations import run_generator
from app.settings import Settings


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _dashboard(view: AccountView) -> dict[str, object]:
    subscription = view.subscription
    return {
        "subscriptionBalance": view.subscription_balance,
        "packBalance": view.pack_balance,
        "packExpiresAt": _iso(view.pack_expires_at),
        "nextRenewalAt": _iso(view.next_renewal_at),
        "subscription": subscription
        and {
            "plan": subscription.terms.plan.value,
            "interval": subscription.terms.interval.value,
            "status": subscription.status.value,
            "monthlyCredits": subscription.terms.monthly_credits,
            "startedAt": _iso(subscription.terms.started_at),
            "canceledAt": _iso(subscription.terms.canceled_at),
            "endsAt": _iso(subscription.terms.ends_at()),
        },
    }


def create_reference_app(settings: Settings) -> Starlette:
    # The gateway's own factory: same engine, pool, and event publishing (NOTIFY on commit).
    services = build_services(settings)

    async def read(request: Request) -> JSONResponse:
        body = await request.json()
        (view,) = await load_accounts([body["accountId"]], services)
        if view is None:
            return JSONResponse({"error": "NOT_FOUND"}, status_code=404)
        if request.path_params["shape"] == "editor":
            return JSONResponse({"me": {"creditsTotal": view.credits_total}})
        return JSONResponse({"me": _dashboard(view)})

    async def run(request: Request) -> JSONResponse:
        body = await request.json()
        try:
            done = await run_generator(
                body["accountId"], Tool(body["tool"]), body["key"], None, services
            )
        except CreditError as exc:
            return JSONResponse({"runGenerator": {"message": exc.message}})
        generation = done.generation
        return JSONResponse(
            {
                "runGenerator": {
                    "generation": {
                        "id": generation.id,
                        "status": generation.status.value,
                        "cost": generation.cost,
                    },
                    "account": {"creditsTotal": done.account.credits_total},
                }
            }
        )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await services.db.dispose()

    app = Starlette(
        routes=[
            Route("/read/{shape:str}", read, methods=["POST"]),
            Route("/run", run, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.engine = services.db.engine
    app.state.services = services  # what bench/queries.py records statements through
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_reference_app(Settings())
    settle_heap()  # the same process tuning as `creditgate serve`, so only the layer differs
    # Served like `creditgate serve`: one worker, uvicorn's auto loop/HTTP, no access log.
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
