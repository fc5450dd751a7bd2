"""The app factory: the only place that sees every layer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from app.clock import Clock, SystemClock
from app.domain.model import Plan
from app.domain.plans import PlanCatalog
from app.persistence.engine import create_engine
from app.persistence.unit_of_work import Database
from app.runtime import settle_heap
from app.services.deps import Services
from app.settings import Settings
from graphql_schema.context import Context
from graphql_schema.schema import create_schema


class CreditGateGraphQL(GraphQL[Context, None]):
    def __init__(self, services: Services, settings: Settings) -> None:
        super().__init__(
            create_schema(document_cache_size=settings.document_cache_size),
            graphql_ide=None if settings.is_production else "graphiql",
            allow_queries_via_get=not settings.is_production,
        )
        self._services = services
        self._jwt_secret = settings.jwt_secret

    async def get_context(  # type: ignore[override]
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        return Context(
            services=self._services,
            jwt_secret=self._jwt_secret,
            authorization=request.headers.get("authorization"),
            request=request if isinstance(request, Request) else None,
        )


def build_services(settings: Settings, clock: Clock | None = None) -> Services:
    plans = PlanCatalog(
        {
            Plan.STARTER: settings.starter_monthly_credits,
            Plan.PRO: settings.pro_monthly_credits,
        }
    )
    return Services(db=Database(create_engine(settings)), clock=clock or SystemClock(), plans=plans)


def create_app(settings: Settings, clock: Clock | None = None) -> Starlette:
    services = build_services(settings, clock)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await services.db.dispose()

    graphql = CreditGateGraphQL(services, settings)
    app = Starlette(
        routes=[Route("/graphql", graphql, methods=["GET", "POST"])],
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.settings = settings
    return app


def create_served_app(settings: Settings | None = None) -> Starlette:
    """The app as ``creditgate serve`` runs it, in each worker process.

    Workers import this factory and read the settings once; then the heap built at startup
    is settled (tests build apps with ``create_app`` and keep the collector as it is).
    """
    app = create_app(settings or Settings())
    settle_heap()
    return app
