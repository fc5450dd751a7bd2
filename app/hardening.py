"""What the app factory adds to harden the gateway (docs/security.md), kept out of main.py.

``HardenedRequests`` is mixed into the GraphQL view: it checks the JSON body and applies
trusted documents. The functions build the operation policy, the rate limiter and the
HTTP middleware from the settings.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from cross_web import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http import GraphQLRequestData
from strawberry.http.types import QueryParams
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.types import ExecutionResult

from app.clock import Clock
from app.observability.metrics import Metrics
from app.observability.requests import RequestMiddleware
from app.security.http_guards import (
    MAX_JSON_DEPTH,
    HttpGuardsMiddleware,
    has_lone_surrogate,
    nested_deeper_than,
)
from app.security.rate_limits import RateLimiter
from app.settings import Settings
from graphql_schema.context import Context
from graphql_schema.engine.documents import Documents
from graphql_schema.engine.limits import DocumentLimits, ListLimits, document_rules
from graphql_schema.engine.observability import OperationObserver
from graphql_schema.engine.operations import Guard, OperationPolicy
from graphql_schema.engine.over_http import refused
from graphql_schema.engine.persisted_queries import (
    DocumentStore,
    InProcessDocuments,
    PersistedQueries,
    RedisDocuments,
)
from graphql_schema.engine.rate_limiting import MutationRateLimit
from graphql_schema.engine.text_inputs import NoNulInStringLiterals, NoNulInVariables
from graphql_schema.engine.trusted_documents import TrustedDocuments, with_document_id
from graphql_schema.engine.websocket import GatewayTransportWS, TextFrames, WebSocketLimits
from graphql_schema.errors import ApiError

TOO_DEEP = f"JSON may nest lists and objects at most {MAX_JSON_DEPTH} deep."


class TooDeeplyNested(json.JSONDecodeError):
    """JSON nested past ``MAX_JSON_DEPTH``: a decoding error, so each transport refuses it
    as it refuses malformed JSON (HTTP 400 here; the websocket closes with 4400)."""

    def __init__(self, text: str) -> None:
        super().__init__(TOO_DEEP, text, 0)


class HardenedRequests:
    """Overrides of Strawberry's HTTP view; list it before ``strawberry.asgi.GraphQL``.

    The websocket gets the gateway's handler (graphql_schema/engine/websocket.py): the same
    trusted documents, policy and body limit as HTTP, and per-account caps.
    """

    trusted_documents = TrustedDocuments({})
    persisted_queries = PersistedQueries(None)
    websocket_limits = WebSocketLimits()
    # Typed as the view declares them, so mypy sees one definition through both bases.
    graphql_transport_ws_handler_class: type[BaseGraphQLTransportWSHandler[Context, None]] = (
        GatewayTransportWS
    )
    websocket_adapter_class: type[ASGIWebSocketAdapter] = TextFrames

    def decode_json(self, data: str | bytes) -> object:
        # Strawberry answers 500 to a body in another encoding or a bare number or string.
        try:
            text = data.decode() if isinstance(data, bytes) else data
        except UnicodeDecodeError as exc:
            raise HTTPException(400, "The body must be JSON in UTF-8.") from exc
        try:
            payload = super().decode_json(text)  # type: ignore[misc]
        except RecursionError as exc:
            raise TooDeeplyNested(text) from exc
        if nested_deeper_than(payload):
            raise TooDeeplyNested(text)
        if not isinstance(payload, dict | list):
            raise HTTPException(400, "The body must be a JSON object.")
        if has_lone_surrogate(text, payload):
            raise HTTPException(400, "Strings must be valid Unicode: no lone surrogates.")
        # ``documentId`` is not kept by Strawberry's parser: carried as an extension.
        return with_document_id(payload)

    def parse_json(self, data: str | bytes) -> Any:
        try:
            return self.decode_json(data)
        except TooDeeplyNested as exc:
            raise HTTPException(400, TOO_DEEP) from exc
        except json.JSONDecodeError as exc:  # as Strawberry answers it
            raise HTTPException(400, "Unable to parse request body as JSON") from exc

    def parse_query_params(self, params: QueryParams) -> dict[str, Any]:
        return with_document_id(super().parse_query_params(params))  # type: ignore[misc]

    async def execute_operation(
        self,
        request: Any,
        request_adapter: Any,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: Context,
        root_value: Any,
        sub_response: Any,
    ) -> Any:
        # A batch reaches here one operation at a time (graphql_schema/engine/over_http.py).
        if not isinstance(request_data, GraphQLRequestData):
            return await super().execute_operation(  # type: ignore[misc]
                request, request_adapter, request_data, context, root_value, sub_response
            )

        def execute(data: GraphQLRequestData) -> Awaitable[Any]:
            return super(HardenedRequests, self).execute_operation(  # type: ignore[misc]
                request, request_adapter, data, context, root_value, sub_response
            )

        return await self.admitted(request_data, context, execute)

    async def admitted(
        self,
        request_data: GraphQLRequestData,
        context: Context,
        execute: Callable[[GraphQLRequestData], Awaitable[Any]],
    ) -> Any:
        """``execute`` the operation as trusted documents and persisted queries admit it.

        The first hook with both the request and the caller: the manifest applies per token.
        The JSON lane (graphql_schema/engine/json_posts.py) calls it directly."""
        try:
            admitted = await self.persisted_queries.fill(request_data, self.trusted_documents)
            request_data = self.trusted_documents.admit(admitted.data, context)
        except ApiError as error:
            return ExecutionResult(data=None, errors=[error])
        result = await execute(request_data)
        if admitted.register and isinstance(result, ExecutionResult) and not refused(result):
            await self.persisted_queries.register(admitted)
        return result


def websocket_limits(settings: Settings) -> WebSocketLimits:
    """A websocket frame is bounded like an HTTP body (uvicorn's ws_max_size matches)."""
    return WebSocketLimits(max_frame_bytes=settings.max_body_bytes)


def list_limits(settings: Settings) -> ListLimits:
    return ListLimits(max_ids=settings.max_account_ids, max_page_size=settings.max_page_size)


def operation_policy(
    settings: Settings, limiter: RateLimiter | None, metrics: Metrics | None
) -> OperationPolicy:
    """Document limits, input guards, the mutation rate limit and metrics, for every
    query and mutation (graphql_schema/engine/operations.py)."""
    limits = DocumentLimits(
        max_depth=settings.max_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
        introspection=settings.introspection_allowed,
    )
    guards: list[Guard] = [NoNulInVariables()]
    if limiter is not None:
        guards.append(MutationRateLimit(limiter))
    return OperationPolicy(
        documents=Documents(
            maxsize=settings.document_cache_size,
            max_bytes=settings.document_cache_bytes,
            hide_suggestions=settings.is_production,
        ),
        rules=(*document_rules(limits), NoNulInStringLiterals),
        max_tokens=limits.max_tokens,
        guards=tuple(guards),
        observer=OperationObserver(metrics) if metrics is not None else None,
    )


def trusted_documents(settings: Settings) -> TrustedDocuments:
    if settings.trusted_documents_file is None:
        return TrustedDocuments({})
    return TrustedDocuments.load(
        settings.trusted_documents_file, only=settings.trusted_documents_only
    )


def persisted_queries(settings: Settings) -> PersistedQueries:
    """Automatic persisted queries: off in trusted-only mode (the manifest is the list)."""
    if settings.trusted_documents_only or not settings.apq_enabled:
        return PersistedQueries(None)
    store: DocumentStore
    if settings.redis_url:
        store = RedisDocuments(
            settings.redis_url,
            prefix=settings.rate_limit_key_prefix,
            ttl_seconds=settings.apq_ttl_seconds,
            max_bytes=settings.max_body_bytes,
        )
    else:
        store = InProcessDocuments(settings.apq_cache_size, settings.apq_cache_bytes)
    return PersistedQueries(store)


def rate_limiter(settings: Settings, clock: Clock) -> RateLimiter | None:
    if not settings.rate_limits_enabled:
        return None
    return RateLimiter(
        settings.rate_limit_per_account,
        settings.rate_limit_per_ip,
        redis_url=settings.redis_url,
        key_prefix=settings.rate_limit_key_prefix,
        now=lambda: clock.now().timestamp(),
    )


def http_middleware(settings: Settings, metrics: Metrics) -> list[Middleware]:
    """Outermost first: every answer, refusals included, carries a request id and is logged."""
    middleware = [Middleware(RequestMiddleware, metrics=metrics)]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=list(settings.cors_allow_headers),
                expose_headers=["x-request-id"],
                max_age=600,
            )
        )
    middleware.append(
        Middleware(
            HttpGuardsMiddleware,
            max_bytes=settings.max_body_bytes,
            json_paths=("/graphql",),
            body_timeout=settings.body_read_timeout_seconds,
        )
    )
    return middleware
