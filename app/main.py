"""The app factory: the only place that sees every layer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from app.clock import Clock, SystemClock
from app.domain.model import Plan
from app.domain.plans import PlanCatalog
from app.hardening import (
    HardenedRequests,
    http_middleware,
    list_limits,
    rate_limiter,
    schema_extensions,
    trusted_documents,
)
from app.persistence.engine import create_engine
from app.persistence.unit_of_work import Database
from app.security.rate_limits import RateLimiter
from app.security.request_id import request_id_of
from app.services.deps import Services
from app.settings import Settings
from app.sweeper import running_sweeper
from graphql_schema.context import Context
from graphql_schema.masking import quiet_expected_errors
from graphql_schema.schema import create_schema


class CreditGateGraphQL(HardenedRequests, GraphQL[Context, None]):
    def __init__(
        self, services: Services, settings: Settings, limiter: RateLimiter | None = None
    ) -> None:
        super().__init__(
            create_schema(
                document_cache_size=settings.document_cache_size,
                extensions=schema_extensions(settings, limiter),
                field_suggestions=not settings.is_production,
            ),
            graphql_ide=None if settings.is_production else "graphiql",
            allow_queries_via_get=not settings.is_production,
        )
        self._services = services
        self._jwt_secret = settings.jwt_secret
        self._lists = list_limits(settings)
        self.trusted_documents = trusted_documents(settings)

    async def get_context(  # type: ignore[override]
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        return Context(
            services=self._services,
            jwt_secret=self._jwt_secret,
            authorization=request.headers.get("authorization"),
            request=request if isinstance(request, Request) else None,
            request_id=request_id_of(request.scope),
            lists=self._lists,
        )


def build_services(settings: Settings, clock: Clock | None = None) -> Services:
    plans = PlanCatalog(
        {
            Plan.STARTER: settings.starter_monthly_credits,
            Plan.PRO: settings.pro_monthly_credits,
        }
    )
    return Services(
        db=Database(create_engine(settings)),
        clock=clock or SystemClock(),
        plans=plans,
        generation_timeout=timedelta(seconds=settings.generation_timeout_seconds),
    )


def create_app(settings: Settings, clock: Clock | None = None) -> Starlette:
    services = build_services(settings, clock)
    limiter = rate_limiter(settings)
    quiet_expected_errors()

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with running_sweeper(services, settings.sweep_interval_seconds):
            yield
        await services.db.dispose()
        if limiter is not None:
            await limiter.aclose()

    graphql = CreditGateGraphQL(services, settings, limiter)
    app = Starlette(
        routes=[Route("/graphql", graphql, methods=["GET", "POST"])],
        middleware=http_middleware(settings),
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.settings = settings
    app.state.rate_limiter = limiter
    return app
