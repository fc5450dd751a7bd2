"""Settings, read once from the environment and ``.env`` and passed down from there."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.security.rate_limits import parse_rate

DEVELOPMENT_SECRET = "dev-secret-change-me-0123456789abcdef"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CREDITGATE_", env_file=".env", extra="ignore", frozen=True
    )

    env: Literal["development", "test", "production"] = "development"
    database_url: str = f"sqlite+aiosqlite:///{Path('data') / 'creditgate.sqlite3'}"
    jwt_secret: str = DEVELOPMENT_SECRET
    host: str = "127.0.0.1"
    port: int = 8000
    # Connections per process; near the expected concurrency, no overflow churn.
    db_pool_size: int = Field(default=16, ge=1, le=200)
    db_max_overflow: int = Field(default=0, ge=0, le=200)
    starter_monthly_credits: int = Field(default=1000, ge=0, le=1_000_000)
    pro_monthly_credits: int = Field(default=4000, ge=0, le=1_000_000)
    # Generations QUEUED or RUNNING at once per account, by plan; 0 means no cap.
    starter_max_active_generations: int = Field(default=2, ge=0, le=10_000)
    pro_max_active_generations: int = Field(default=5, ge=0, le=10_000)
    # A built-in worker for `make run` without a render farm: claims queued jobs and
    # completes them after demo_worker_seconds. Empty: on in development only.
    demo_worker: bool | None = None
    demo_worker_seconds: float = Field(default=3.0, ge=0, le=3600)
    # A generation no worker finished within this many seconds (queued, or since it was
    # claimed) is failed and its hold released.
    generation_timeout_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    # How often each server process sweeps due renewals and timed-out generations.
    sweep_interval_seconds: float = Field(default=30.0, ge=0, le=3600)
    # GraphQL document caches (parse, validate): bounded so hostile documents can't grow them.
    document_cache_size: int = Field(default=256, ge=0, le=100_000)
    # ... and by bytes each (estimated from the document text), so large documents can't.
    document_cache_bytes: int = Field(default=16 * 1024 * 1024, ge=0, le=1024 * 1024 * 1024)
    # The GraphQL fast paths (plain leaves, query plans, the JSON lane); off, the stock path.
    # They also switch off by themselves at library versions other than the pinned ones.
    query_plans: bool = True
    # PostgreSQL's hot statements (account reads, a run's write) straight on asyncpg, compiled
    # once from their Core form (app/persistence/driver.py); off, through SQLAlchemy's engine.
    # Off by itself at SQLAlchemy or asyncpg versions other than the pinned ones.
    driver_lane: bool = True
    # A run on the lane read and written without the account's lock, in two autocommit
    # statements, a process's runs of one account taking turns: written only if the
    # account's version has not moved (else again under the lock). Off: always under the
    # lock (app/persistence/contention.py, plans.py).
    unlocked_runs: bool = True
    # Slow clients: the longest a request head, then its body, may take to arrive (closed;
    # 408), and how long an idle keep-alive connection stays open.
    header_read_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    body_read_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    keep_alive_timeout_seconds: int = Field(default=5, ge=1, le=600)
    # Logs: JSON lines by default in production, readable lines elsewhere.
    log_format: Literal["json", "text"] | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # On SIGTERM, how long requests in flight may take before they are cancelled.
    shutdown_grace_seconds: int = Field(default=20, ge=0, le=600)
    # LISTEN needs a session of its own: a direct URL when database_url goes through PgBouncer.
    events_database_url: str | None = None
    # `serve --workers N`: the folder the workers' Prometheus counters are kept in (emptied
    # when serve starts); empty: a fresh temporary folder, removed when serve exits.
    metrics_dir: Path | None = None
    # Longest sleep of the renewal alarm between checks of the clock.
    renewal_check_seconds: float = Field(default=30.0, gt=0, le=3600)
    # Only with env=test: this process's clock runs this many seconds off the system clock,
    # so process tests can put a renewal between two processes' clocks without sleeping.
    clock_offset_seconds: float = Field(default=0.0, ge=-366 * 86400, le=366 * 86400)
    # One account's share of a process's live updates (docs/clients.md, "Live balances").
    max_connections_per_account: int = Field(default=5, ge=1, le=10_000)
    max_subscriptions_per_account: int = Field(default=20, ge=1, le=100_000)

    # Hardening (docs/security.md): every document is bounded before any work is done.
    max_body_bytes: int = Field(default=128 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_depth: int = Field(default=10, ge=1, le=100)
    max_aliases: int = Field(default=15, ge=0, le=1000)
    max_tokens: int = Field(default=2000, ge=100, le=100_000)
    max_account_ids: int = Field(default=100, ge=1, le=10_000)
    max_page_size: int = Field(default=100, ge=1, le=10_000)
    # Comma-separated origins allowed by CORS; none means same-origin only.
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    trusted_documents_file: Path | None = None
    trusted_documents_only: bool = False
    rate_limits_enabled: bool = True
    rate_limit_per_account: str = "60/minute"
    rate_limit_per_ip: str = "300/minute"
    # Shared rate-limit counters across processes; in-memory per process when unset.
    redis_url: str | None = None
    rate_limit_key_prefix: str = Field(default="creditgate", min_length=1, max_length=64)

    # Payments (README, "Paying for packs"): the sandbox outside production, Stripe in it.
    payment_provider: Literal["sandbox", "stripe"] | None = None
    # instant: a sandbox checkout is paid when opened; pending: sandboxSettlePayment decides.
    sandbox_payments: Literal["instant", "pending"] = "instant"
    stripe_secret_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str = "https://api.stripe.com"
    # Where Checkout sends the customer back; {PURCHASE_ID} is replaced by the purchase id.
    checkout_success_url: str = "http://127.0.0.1:8000/checkout/success?purchase={PURCHASE_ID}"
    checkout_cancel_url: str = "http://127.0.0.1:8000/checkout/cancel?purchase={PURCHASE_ID}"
    # A purchase PENDING this long is asked about by the sweep instead of waited for.
    payment_reconcile_after_seconds: int = Field(default=600, ge=0, le=7 * 24 * 3600)

    # Outgoing webhooks (docs/webhooks.md). A delivery worker runs in
    # every server process; it looks for due retries this often (new events wake it at once).
    webhook_workers: bool = True
    webhook_poll_seconds: float = Field(default=1.0, gt=0, le=3600)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # Deliveries in flight to one endpoint from one process: a slow one keeps only these.
    webhook_concurrency_per_endpoint: int = Field(default=8, ge=1, le=100)
    # Endpoint URLs must be https to public addresses (checked at create and at send);
    # unset: in production only.
    webhook_public_only: bool | None = None
    # credits.low fires when the total falls below this, per plan; unset: 10% of the plan's
    # monthly allowance.
    starter_low_balance_credits: int | None = Field(default=None, ge=0, le=1_000_000)
    pro_low_balance_credits: int | None = Field(default=None, ge=0, le=1_000_000)

    # App stores (docs/payments.md, "App Store and Google Play").
    # The App Store is on when a bundle id is set: StoreKit 2 transactions and App Store
    # Server Notifications V2, verified against Apple's root certificates (files, DER or
    # PEM, comma-separated) for this bundle, app and environment.
    app_store_bundle_id: str | None = None
    app_store_app_apple_id: int | None = None
    app_store_environment: Literal["PRODUCTION", "SANDBOX", "XCODE", "LOCAL_TESTING"] = "SANDBOX"
    app_store_root_certificates: Annotated[tuple[Path, ...], NoDecode] = ()
    # OCSP revocation checks of the signing chain; unset: on in production, off elsewhere.
    app_store_online_checks: bool | None = None
    # Google Play is on when a package name is set: the Play Developer API with the service
    # account's key file; RTDN pushes need the push subscription's OIDC audience.
    google_play_package_name: str | None = None
    google_play_service_account_file: Path | None = None
    google_play_api_base: str = "https://androidpublisher.googleapis.com/"
    google_play_rtdn_audience: str | None = None
    # The push subscription's service account (the token's email); empty: any Google one.
    google_play_rtdn_service_account: str | None = None
    google_play_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"
    # License testers' purchases; unset: accepted outside production, refused in it.
    google_play_test_purchases: bool | None = None
    # Overrides of the catalog's store product ids: STORE:productId=packId, comma-separated.
    store_products: Annotated[tuple[str, ...], NoDecode] = ()
    # How often each process pulls the stores' voided purchases (refunds, chargebacks).
    store_voided_interval_seconds: int = Field(default=3600, ge=1, le=7 * 24 * 3600)

    # Clients (docs/clients.md): APQ, batching, CORS request headers.
    # Automatic persisted queries: registered texts kept in this process (LRU by entries and
    # bytes), or in Redis (under the key prefix, each for a TTL) when redis_url is set.
    apq_enabled: bool = True
    apq_cache_size: int = Field(default=1000, ge=0, le=1_000_000)
    apq_cache_bytes: int = Field(default=8 * 1024 * 1024, ge=0, le=1024 * 1024 * 1024)
    apq_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=1, le=365 * 24 * 3600)
    # Introspection (__schema, __type); unset: off in production, on elsewhere.
    introspection: bool | None = None
    # Operations in one batch (a JSON array, as Apollo's BatchHttpLink sends); 0: no batches.
    max_batch_size: int = Field(default=10, ge=0, le=100)
    # Comma-separated request headers a cross-origin page may send (CORS preflight).
    cors_allow_headers: Annotated[tuple[str, ...], NoDecode] = (
        "authorization",
        "content-type",
        "x-request-id",
        "traceparent",
        "tracestate",
        "baggage",
        "sentry-trace",
        "apollographql-client-name",
        "apollographql-client-version",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(origin.strip() for origin in value.split(",") if origin.strip())
        return value

    @field_validator("app_store_root_certificates", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(Path(part.strip()) for part in value.split(",") if part.strip())
        return value

    @field_validator("store_products", mode="before")
    @classmethod
    def _split_products(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("store_products")
    @classmethod
    def _check_products(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            store, _, rest = entry.partition(":")
            product, _, pack = rest.partition("=")
            if store not in ("APP_STORE", "GOOGLE_PLAY") or not product or not pack:
                raise ValueError(
                    f"CREDITGATE_STORE_PRODUCTS entry {entry!r} is not STORE:productId=packId"
                )
        return value

    @field_validator("cors_allow_headers", mode="before")
    @classmethod
    def _split_headers(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip().lower() for name in value.split(",") if name.strip())
        return value

    @field_validator(
        "redis_url",
        "trusted_documents_file",
        "metrics_dir",
        "log_format",
        "events_database_url",
        "introspection",
        "payment_provider",
        "demo_worker",
        "stripe_secret_key",
        "stripe_webhook_secret",
        "webhook_public_only",
        "starter_low_balance_credits",
        "pro_low_balance_credits",
        "app_store_bundle_id",
        "app_store_app_apple_id",
        "app_store_online_checks",
        "google_play_package_name",
        "google_play_service_account_file",
        "google_play_rtdn_audience",
        "google_play_rtdn_service_account",
        "google_play_test_purchases",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("rate_limit_per_account", "rate_limit_per_ip")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    @model_validator(mode="after")
    def _refuse_default_secret_in_production(self) -> Settings:
        if self.env == "production" and (
            self.jwt_secret == DEVELOPMENT_SECRET or len(self.jwt_secret) < 32
        ):
            raise ValueError(
                "CREDITGATE_JWT_SECRET must be set to a random secret of 32+ characters "
                "in production"
            )
        return self

    @model_validator(mode="after")
    def _clock_offset_only_in_tests(self) -> Settings:
        if self.clock_offset_seconds and self.env != "test":
            raise ValueError("CREDITGATE_CLOCK_OFFSET_SECONDS is for CREDITGATE_ENV=test only")
        return self

    @model_validator(mode="after")
    def _trusted_only_needs_a_manifest(self) -> Settings:
        if self.trusted_documents_only and self.trusted_documents_file is None:
            raise ValueError(
                "CREDITGATE_TRUSTED_DOCUMENTS_ONLY needs CREDITGATE_TRUSTED_DOCUMENTS_FILE"
            )
        return self

    @model_validator(mode="after")
    def _production_takes_real_money(self) -> Settings:
        if self.env != "production":
            return self
        if self.payments == "sandbox":
            raise ValueError("production refuses the sandbox payment provider")
        if not (self.stripe_secret_key and self.stripe_webhook_secret):
            raise ValueError(
                "CREDITGATE_STRIPE_SECRET_KEY and CREDITGATE_STRIPE_WEBHOOK_SECRET must be set "
                "in production"
            )
        return self

    @model_validator(mode="after")
    def _stores_are_complete(self) -> Settings:
        if self.app_store_bundle_id and not self.app_store_root_certificates:
            raise ValueError("the App Store needs CREDITGATE_APP_STORE_ROOT_CERTIFICATES")
        if self.google_play_package_name and self.google_play_service_account_file is None:
            raise ValueError("Google Play needs CREDITGATE_GOOGLE_PLAY_SERVICE_ACCOUNT_FILE")
        if self.env != "production":
            return self
        # Production takes real purchases only: Apple's unsigned environments skip the
        # signature check altogether, and sandbox or test purchases cost nothing.
        if self.app_store_bundle_id and self.app_store_environment != "PRODUCTION":
            raise ValueError(
                f"production refuses CREDITGATE_APP_STORE_ENVIRONMENT={self.app_store_environment}"
            )
        if self.app_store_online_checks is False:
            raise ValueError("production refuses CREDITGATE_APP_STORE_ONLINE_CHECKS=false")
        if self.app_store_bundle_id and self.app_store_app_apple_id is None:
            raise ValueError("the App Store in production needs CREDITGATE_APP_STORE_APP_APPLE_ID")
        if self.google_play_test_purchases:
            raise ValueError("production refuses CREDITGATE_GOOGLE_PLAY_TEST_PURCHASES=true")
        return self

    @property
    def app_store_online_checks_enabled(self) -> bool:
        if self.app_store_online_checks is None:
            return self.is_production
        return self.app_store_online_checks

    @property
    def google_play_test_purchases_accepted(self) -> bool:
        if self.google_play_test_purchases is None:
            return not self.is_production
        return self.google_play_test_purchases

    @property
    def store_product_overrides(self) -> dict[tuple[str, str], str]:
        """(store, product id) -> pack id, from CREDITGATE_STORE_PRODUCTS."""
        found = {}
        for entry in self.store_products:
            store, _, rest = entry.partition(":")
            product, _, pack = rest.partition("=")
            found[(store, product)] = pack
        return found

    @property
    def payments(self) -> Literal["sandbox", "stripe"]:
        """The provider in force: as set, else Stripe in production and the sandbox elsewhere."""
        if self.payment_provider is not None:
            return self.payment_provider
        return "stripe" if self.env == "production" else "sandbox"

    @property
    def demo_worker_enabled(self) -> bool:
        """As set; by default only in development (never in test or production)."""
        return self.demo_worker if self.demo_worker is not None else self.env == "development"

    @property
    def webhooks_public_only(self) -> bool:
        """As set; by default only in production."""
        if self.webhook_public_only is not None:
            return self.webhook_public_only
        return self.is_production

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def introspection_allowed(self) -> bool:
        return not self.is_production if self.introspection is None else self.introspection

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
