"""The app factory: the only place that sees every layer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET

from app.clock import Clock, SystemClock, clock_for
from app.demo_worker import running_demo_worker
from app.domain.model import Plan
from app.domain.plans import PlanCatalog
from app.domain.purchases import ProviderName
from app.events.bus import EventBus
from app.events.live import LiveEvents, build_live_events
from app.hardening import (
    HardenedRequests,
    http_middleware,
    list_limits,
    operation_policy,
    persisted_queries,
    rate_limiter,
    trusted_documents,
    websocket_limits,
)
from app.observability.logging import configure_logging
from app.observability.metrics import Metrics, multiprocess_directory
from app.observability.probes import Probes
from app.observability.requests import current_request
from app.payments.port import PaymentProvider, StoreProvider
from app.payments.sandbox import SandboxProvider
from app.payments.webhook import ProviderWebhook, StoreWebhook
from app.persistence.driver import DriverLane, lane_enabled
from app.persistence.engine import create_engine
from app.persistence.unit_of_work import Database
from app.runtime import settle_heap
from app.security.rate_limits import RateLimiter
from app.security.request_id import request_id_of
from app.services.deps import Services, StoreSweep
from app.settings import Settings
from app.sweeper import running_sweeper
from app.webhooks.http import HttpSender
from app.webhooks.worker import DeliveryWorker, running_delivery_worker
from graphql_schema.context import Context
from graphql_schema.engine.fences import fast_paths_enabled
from graphql_schema.engine.json_posts import JsonPostLane
from graphql_schema.engine.observability import log_graphql_errors
from graphql_schema.engine.over_http import GraphQLOverHTTP
from graphql_schema.errors import ApiError
from graphql_schema.schema import create_schema

logger = logging.getLogger("creditgate")


# strawberry.asgi.GraphQL's own websocket_adapter_class disagrees with its base's declaration
# (Strawberry silences it there); HardenedRequests' narrower one meets the same disagreement.
class CreditGateGraphQL(  # type: ignore[misc]
    JsonPostLane, GraphQLOverHTTP, HardenedRequests, GraphQL[Context, None]
):
    def __init__(
        self,
        services: Services,
        settings: Settings,
        *,
        limiter: RateLimiter | None = None,
        live: LiveEvents | None = None,
        metrics: Metrics | None = None,
        fast_paths: bool = True,
    ) -> None:
        super().__init__(
            create_schema(
                policy=operation_policy(settings, limiter, metrics),
                field_suggestions=not settings.is_production,
                sandbox_payments=settings.payments == "sandbox",
                fast_paths=fast_paths,
            ),
            graphql_ide=None if settings.is_production else "graphiql",
            # Queries over GET in every environment (graphql_schema/engine/over_http.py): tokens
            # travel in Authorization, never in cookies, so a GET cannot be forged cross-site.
            allow_queries_via_get=True,
            # Only graphql-transport-ws: the legacy graphql-ws protocol has known CVEs.
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        )
        self._services = services
        self._jwt_secret = settings.jwt_secret
        self._lists = list_limits(settings)
        self.trusted_documents = trusted_documents(settings)
        self.persisted_queries = persisted_queries(settings)
        self.max_batch_size = settings.max_batch_size
        self.websocket_limits = websocket_limits(settings)
        self._feeds = live.hub if live else None
        self._fast_paths = fast_paths

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        if self._fast_paths:
            return await super().run(request, context, root_value)
        # Fenced off (graphql_schema/engine/fences.py): Strawberry's own HTTP path, no JSON lane.
        return await super(JsonPostLane, self).run(request, context, root_value)

    def encode_json(self, data: object) -> str:
        # The result is JSON-ready (scalars already serialized); orjson writes it ~10x faster
        # than json.dumps, which was ~4% of a served dashboard read. Text, not bytes: the
        # websocket transport sends bytes as binary frames, which clients refuse.
        try:
            return orjson.dumps(data).decode()
        except orjson.JSONEncodeError:  # lone surrogates: json.dumps escapes them
            encoded = super().encode_json(data)
            return encoded if isinstance(encoded, str) else encoded.decode()

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket | None
    ) -> Context:
        return Context(
            services=self._services,
            jwt_secret=self._jwt_secret,
            authorization=request.headers.get("authorization"),
            request=request if isinstance(request, Request) else None,
            websocket_client=(
                request.client.host if isinstance(request, WebSocket) and request.client else None
            ),
            request_id=request_id_of(request.scope),
            lists=self._lists,
            feeds=self._feeds,
        )

    async def on_ws_connect(self, context: Context) -> None:
        """Refuse the connection (4403) unless connection_init carries a valid token; over
        the account's connection cap, OverCapacity (the handler closes with 4429)."""
        try:
            principal = context.authorize_connection()
        except ApiError:
            principal = None
        if principal is None:
            raise ConnectionRejectionError({"message": "Send a valid Authorization token."})
        context.open_session(principal)
        record = current_request.get()
        if record is not None:
            record.account_id = principal.account_id or "service"


class Gateway(Starlette):
    """Starlette, with ``POST``/``GET /graphql`` taken straight to the GraphQL view.

    Every HTTP request passes Starlette's error and exception middlewares and its router
    before the app's own layers: served, four coroutine layers and a route match for each
    GraphQL request, none of which does anything for it (the request layer already answers
    any exception with a masked 500; the view answers every refusal itself). With the fast
    paths on (graphql_schema/engine/fences.py), ``/graphql`` over HTTP runs the app's own
    middlewares (request id and log, CORS, guards) around the view and nothing else; every
    other path, websockets and the lifespan take Starlette's way.
    """

    def __init__(self, *, graphql: ASGIApp | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        lane = graphql
        if lane is not None:
            for cls, args, options in reversed(self.user_middleware):
                lane = cls(lane, *args, **options)
        self._graphql_lane = lane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self._graphql_lane
        if (
            lane is not None
            and scope["type"] == "http"
            and scope["path"] == "/graphql"
            and not scope.get("root_path")
        ):
            scope["app"] = self
            await lane(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def build_services(
    settings: Settings, clock: Clock | None = None, live: LiveEvents | None = None
) -> Services:
    plans = PlanCatalog(
        {
            Plan.STARTER: settings.starter_monthly_credits,
            Plan.PRO: settings.pro_monthly_credits,
        },
        {
            Plan.STARTER: settings.starter_max_active_generations,
            Plan.PRO: settings.pro_max_active_generations,
        },
        {
            plan: credits
            for plan, credits in (
                (Plan.STARTER, settings.starter_low_balance_credits),
                (Plan.PRO, settings.pro_low_balance_credits),
            )
            if credits is not None
        },
    )
    clock = clock or SystemClock()
    # Without a serving process's live events (scripts, workers), still publish: on
    # PostgreSQL the NOTIFY reaches the gateways' subscribers all the same.
    bus = live.bus if live else build_live_events(settings, clock).bus
    return Services(
        db=database(settings, bus),
        clock=clock,
        plans=plans,
        generation_timeout=timedelta(seconds=settings.generation_timeout_seconds),
        payments=payment_provider(settings, clock),
        payment_reconcile_after=timedelta(seconds=settings.payment_reconcile_after_seconds),
        webhook_sender=HttpSender(
            public_only=settings.webhooks_public_only,
            timeout_seconds=settings.webhook_timeout_seconds,
        ),
        webhook_timeout_seconds=settings.webhook_timeout_seconds,
        stores=store_providers(settings),
        store_products=settings.store_product_overrides,
        store_sweep=StoreSweep(every=timedelta(seconds=settings.store_voided_interval_seconds)),
    )


def database(settings: Settings, bus: EventBus | None) -> Database:
    """The engine, and on PostgreSQL the driver lane beside it (app/persistence/driver.py)."""
    engine = create_engine(settings)
    lane = None
    if engine.dialect.name == "postgresql" and lane_enabled(settings.driver_lane):
        lane = DriverLane(engine.url, engine.dialect, settings.db_pool_size)
    return Database(engine, events=bus, lane=lane, unlocked_runs=settings.unlocked_runs)


def delivery_worker(
    settings: Settings, services: Services, metrics: Metrics | None
) -> DeliveryWorker:
    worker = DeliveryWorker(
        services,
        metrics,
        per_endpoint=settings.webhook_concurrency_per_endpoint,
        poll_seconds=settings.webhook_poll_seconds,
    )
    # A commit that wrote outbox rows wakes this process's worker at once.
    services.db.on_outbox = worker.wake
    return worker


def _certificate_der(path: Path) -> bytes:
    """Apple ships its roots as DER (.cer); PEM is accepted too."""
    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
    return data


def store_providers(settings: Settings) -> dict[ProviderName, StoreProvider]:
    """The app stores the settings configure; their completeness is checked by the settings."""
    stores: dict[ProviderName, StoreProvider] = {}
    if settings.app_store_bundle_id:
        from app.payments.app_store import AppStoreProvider

        stores[ProviderName.APP_STORE] = AppStoreProvider(
            root_certificates=[_certificate_der(p) for p in settings.app_store_root_certificates],
            bundle_id=settings.app_store_bundle_id,
            app_apple_id=settings.app_store_app_apple_id,
            environment=settings.app_store_environment,
            online_checks=settings.app_store_online_checks_enabled,
        )
    if settings.google_play_package_name:
        from app.payments.google_play import GooglePlayProvider

        assert settings.google_play_service_account_file is not None
        stores[ProviderName.GOOGLE_PLAY] = GooglePlayProvider(
            package_name=settings.google_play_package_name,
            service_account_file=settings.google_play_service_account_file,
            api_base=settings.google_play_api_base,
            rtdn_audience=settings.google_play_rtdn_audience,
            rtdn_service_account=settings.google_play_rtdn_service_account,
            certs_url=settings.google_play_certs_url,
            accept_test_purchases=settings.google_play_test_purchases_accepted,
        )
    return stores


def payment_provider(settings: Settings, clock: Clock) -> PaymentProvider:
    """The provider the settings name; Stripe's secrets are checked by the settings."""
    if settings.payments == "stripe":
        from app.payments.stripe_provider import StripeProvider

        assert settings.stripe_secret_key and settings.stripe_webhook_secret
        return StripeProvider(
            secret_key=settings.stripe_secret_key,
            webhook_secret=settings.stripe_webhook_secret,
            api_base=settings.stripe_api_base,
            success_url=settings.checkout_success_url,
            cancel_url=settings.checkout_cancel_url,
            clock=clock,
        )
    return SandboxProvider(
        pay_at_once=settings.sandbox_payments == "instant",
        success_url=settings.checkout_success_url,
    )


def create_app(settings: Settings, clock: Clock | None = None) -> Starlette:
    clock = clock or clock_for(settings.clock_offset_seconds)
    log_graphql_errors()
    metrics = Metrics(multiprocess_directory())
    live = build_live_events(
        settings,
        clock,
        observers=[metrics.observe_events],
        on_feed=metrics.subscription_changed,
    )
    services = build_services(settings, clock, live)
    limiter = rate_limiter(settings, clock)
    probes = Probes(services, live, metrics, settings)
    worker = delivery_worker(settings, services, metrics) if settings.webhook_workers else None
    metrics.count_subscriptions(("creditsChanged", "generationUpdated"))

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await live.start()
        logger.info("started: serving /graphql, live events %s", type(live.bus).__name__)
        try:
            async with (
                running_sweeper(services, settings.sweep_interval_seconds),
                running_demo_worker(
                    services, settings.demo_worker_enabled, settings.demo_worker_seconds
                ),
                running_delivery_worker(worker),
            ):
                yield
        finally:
            # Requests in flight have finished and websockets are closed by now (uvicorn).
            await live.stop()
            await services.payments.aclose()
            await services.webhook_sender.aclose()
            for store in services.stores.values():
                await store.aclose()
            await services.db.dispose()
            if limiter is not None:
                await limiter.aclose()
            await graphql.persisted_queries.aclose()
            logger.info("stopped: event listener closed, connection pool disposed")

    fast_paths = fast_paths_enabled(settings.query_plans)
    graphql = CreditGateGraphQL(
        services,
        settings,
        limiter=limiter,
        live=live,
        metrics=metrics,
        fast_paths=fast_paths,
    )
    middleware = http_middleware(settings, metrics)
    app = Gateway(
        graphql=graphql if fast_paths else None,
        routes=[
            # Every method reaches the view: it refuses all but GET and POST with a JSON error.
            Route("/graphql", graphql),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", probes.healthz),
            Route("/readyz", probes.readyz),
            Route("/metrics", probes.metrics),
            Route(
                "/payments/stripe/webhook",
                ProviderWebhook(services, metrics).handle,
                methods=["POST"],
            ),
            Route(
                "/payments/apple/notifications",
                StoreWebhook(services, ProviderName.APP_STORE, metrics).handle,
                methods=["POST"],
            ),
            Route(
                "/payments/google/rtdn",
                StoreWebhook(services, ProviderName.GOOGLE_PLAY, metrics).handle,
                methods=["POST"],
            ),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.settings = settings
    app.state.rate_limiter = limiter
    app.state.persisted_queries = graphql.persisted_queries
    app.state.live = live
    app.state.metrics = metrics
    app.state.webhook_worker = worker
    return app


def create_served_app(settings: Settings | None = None) -> Starlette:
    """The app as ``creditgate serve`` runs it, also ``uvicorn --factory`` in each worker.

    A worker reads the settings once, here, and sets up its logging; then the heap built at
    startup is settled (tests build apps with ``create_app`` and keep the collector as it is).
    """
    if settings is None:
        settings = Settings()
        configure_logging(settings)
    app = create_app(settings)
    settle_heap()
    return app
