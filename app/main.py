"""The app factory: the only place that sees every layer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLRequestData
from strawberry.http.types import QueryParams
from strawberry.types import ExecutionResult

from app.clock import Clock, SystemClock
from app.domain.model import Plan
from app.domain.plans import PlanCatalog
from app.persistence.engine import create_engine
from app.persistence.unit_of_work import Database
from app.security.http_guards import (
    BodySizeLimitMiddleware,
    JsonPostsOnlyMiddleware,
    has_lone_surrogate,
)
from app.security.rate_limits import RateLimiter
from app.security.request_id import RequestIdMiddleware, request_id_of
from app.services.deps import Services
from app.settings import Settings
from graphql_schema.context import Context
from graphql_schema.errors import ApiError
from graphql_schema.limits import DocumentLimits, ListLimits, document_limit_extensions
from graphql_schema.rate_limiting import MutationRateLimit
from graphql_schema.schema import create_schema
from graphql_schema.text_inputs import text_input_extensions
from graphql_schema.trusted_documents import TrustedDocuments, with_document_id


class CreditGateGraphQL(GraphQL[Context, None]):
    def __init__(
        self, services: Services, settings: Settings, limiter: RateLimiter | None = None
    ) -> None:
        super().__init__(
            create_schema(
                document_cache_size=settings.document_cache_size,
                extensions=hardening_extensions(settings, limiter),
                field_suggestions=not settings.is_production,
            ),
            graphql_ide=None if settings.is_production else "graphiql",
            allow_queries_via_get=not settings.is_production,
        )
        self._services = services
        self._jwt_secret = settings.jwt_secret
        self._lists = ListLimits(settings.max_account_ids, settings.max_page_size)
        self._documents = trusted_documents(settings)

    # Trusted documents: ``documentId`` is read at parsing, the manifest applied per caller.
    def decode_json(self, data: str | bytes) -> object:
        # Strawberry answers 500 to a body in another encoding or a bare number or string.
        try:
            text = data.decode() if isinstance(data, bytes) else data
        except UnicodeDecodeError as exc:
            raise HTTPException(400, "The body must be JSON in UTF-8.") from exc
        payload = super().decode_json(text)
        if not isinstance(payload, dict | list):
            raise HTTPException(400, "The body must be a JSON object.")
        if has_lone_surrogate(text, payload):
            raise HTTPException(400, "Strings must be valid Unicode: no lone surrogates.")
        return with_document_id(payload)

    def parse_query_params(self, params: QueryParams) -> dict[str, Any]:
        return with_document_id(super().parse_query_params(params))  # type: ignore[no-any-return]

    async def execute_operation(  # type: ignore[override]
        self,
        request: Request,
        request_adapter: Any,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: Context,
        root_value: None,
        sub_response: Response,
    ) -> Any:
        try:
            if isinstance(request_data, GraphQLRequestData):
                request_data = self._documents.admit(request_data, context)
        except ApiError as error:
            return ExecutionResult(data=None, errors=[error])
        return await super().execute_operation(
            request, request_adapter, request_data, context, root_value, sub_response
        )

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


def hardening_extensions(settings: Settings, limiter: RateLimiter | None) -> list[Any]:
    limits = DocumentLimits(
        max_depth=settings.max_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
        introspection=not settings.is_production,
    )
    extensions: list[Any] = [*document_limit_extensions(limits), *text_input_extensions()]
    if limiter is not None:
        extensions.append(lambda: MutationRateLimit(limiter))
    return extensions


def trusted_documents(settings: Settings) -> TrustedDocuments:
    if settings.trusted_documents_file is None:
        return TrustedDocuments({})
    return TrustedDocuments.load(
        settings.trusted_documents_file, only=settings.trusted_documents_only
    )


def rate_limiter(settings: Settings) -> RateLimiter | None:
    if not settings.rate_limits_enabled:
        return None
    return RateLimiter(
        settings.rate_limit_per_account,
        settings.rate_limit_per_ip,
        redis_url=settings.redis_url,
        key_prefix=settings.rate_limit_key_prefix,
    )


def http_middleware(settings: Settings) -> list[Middleware]:
    """Outermost first: every answer, refusals included, carries a request id."""
    middleware = [Middleware(RequestIdMiddleware)]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type", "x-request-id"],
                expose_headers=["x-request-id"],
                max_age=600,
            )
        )
    middleware += [
        Middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes),
        Middleware(JsonPostsOnlyMiddleware, paths=("/graphql",)),
    ]
    return middleware


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
    limiter = rate_limiter(settings)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
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
