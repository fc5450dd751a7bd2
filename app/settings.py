"""Settings, read once from the environment and ``.env`` and passed down from there."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    # GraphQL document caches (parse, validate): bounded so hostile documents can't grow them.
    document_cache_size: int = Field(default=256, ge=0, le=100_000)
    # Logs: JSON lines by default in production, readable lines elsewhere.
    log_format: Literal["json", "text"] | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # On SIGTERM, how long requests in flight may take before they are cancelled.
    shutdown_grace_seconds: int = Field(default=20, ge=0, le=600)
    # LISTEN needs a session of its own: a direct URL when database_url goes through PgBouncer.
    events_database_url: str | None = None
    # Longest sleep of the renewal alarm between checks of the clock.
    renewal_check_seconds: float = Field(default=30.0, gt=0, le=3600)

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

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def sync_database_url(self) -> str:
        """The URL with the async driver, as Alembic's async env expects it."""
        return self.database_url
