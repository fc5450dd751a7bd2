"""SQLModel tables. Balances live on the account row; every change has a ledger row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.domain.generations import ACTIVE_STATUSES
from app.persistence.types import BigIntId, UTCDateTime


def _utc(**kw: object) -> Any:
    # Any, as sqlmodel's ``Field`` itself returns: the column's annotation is its type.
    return Field(sa_type=UTCDateTime, **kw)  # type: ignore[call-overload]


class TariffRow(SQLModel, table=True):
    __tablename__ = "tariffs"
    tool: str = Field(primary_key=True, max_length=32)
    credits: int


class CreditPackRow(SQLModel, table=True):
    __tablename__ = "credit_packs"
    id: str = Field(primary_key=True, max_length=64)
    credits: int
    price_cents: int
    currency: str = Field(max_length=3)
    position: int = 0
    # A pack taken off sale is no longer sold; purchases of it stay valid.
    on_sale: bool = True
    # The pack's product in each app store (settings can override these).
    app_store_product_id: str | None = Field(default=None, max_length=255)
    google_play_product_id: str | None = Field(default=None, max_length=255)

    __table_args__ = (
        sa.Index("ux_credit_packs_app_store", "app_store_product_id", unique=True),
        sa.Index("ux_credit_packs_google_play", "google_play_product_id", unique=True),
    )


class AccountRow(SQLModel, table=True):
    __tablename__ = "accounts"
    id: str = Field(primary_key=True, max_length=36)
    email: str = Field(max_length=320, sa_column_kwargs={"unique": True})
    created_at: datetime = _utc()
    subscription_balance: int = 0
    pack_balance: int = 0
    cycle_index: int | None = None
    cycle_ends_at: datetime | None = _utc(default=None, nullable=True)
    subscription_id: str | None = Field(default=None, max_length=36)
    # Support's bonus lots (credit_adjustments) with credits left, as of the last write.
    bonus_balance: int = 0
    # Moved by every holder of the account's lock and every plan written: a write made
    # without the lock checks it is still the version its state was read at (plans.py).
    version: int = Field(
        default=0, sa_type=sa.BigInteger, sa_column_kwargs={"server_default": sa.text("0")}
    )

    __table_args__ = (
        sa.CheckConstraint("subscription_balance >= 0", name="ck_accounts_subscription_nonneg"),
        sa.CheckConstraint("pack_balance >= 0", name="ck_accounts_pack_nonneg"),
        sa.CheckConstraint("bonus_balance >= 0", name="ck_accounts_bonus_nonneg"),
    )


class SubscriptionRow(SQLModel, table=True):
    __tablename__ = "subscriptions"
    id: str = Field(primary_key=True, max_length=36)
    account_id: str = Field(foreign_key="accounts.id", index=True, max_length=36)
    plan: str = Field(max_length=16)
    interval: str = Field(max_length=16)
    monthly_credits: int
    started_at: datetime = _utc()
    canceled_at: datetime | None = _utc(default=None, nullable=True)
    created_at: datetime = _utc()
    # A downgrade waiting for the renewal at scheduled_from.
    scheduled_plan: str | None = Field(default=None, max_length=16)
    scheduled_credits: int | None = None
    scheduled_from: datetime | None = _utc(default=None, nullable=True)


class PackPurchaseRow(SQLModel, table=True):
    """A pack bought (paid for first), and the lot of its credits not yet spent or expired.

    Price, currency and credits are copied from the catalog when the purchase is created;
    ``purchased_at`` and ``expires_at`` are set when the payment is confirmed and credited.
    """

    __tablename__ = "pack_purchases"
    id: str = Field(primary_key=True, max_length=36)
    account_id: str = Field(foreign_key="accounts.id", max_length=36)
    pack_id: str = Field(foreign_key="credit_packs.id", max_length=64)
    credits: int
    remaining: int
    price_cents: int
    currency: str = Field(max_length=3)
    purchased_at: datetime | None = _utc(default=None, nullable=True)
    expires_at: datetime | None = _utc(default=None, nullable=True)
    status: str = Field(default="FULFILLED", max_length=16)
    provider: str = Field(default="SANDBOX", max_length=16)
    created_at: datetime = _utc()
    fulfilled_at: datetime | None = _utc(default=None, nullable=True)
    checkout_session_id: str | None = Field(default=None, max_length=255)
    checkout_url: str | None = Field(default=None, max_length=2048)
    # The provider's id of the captured payment; one payment pays for one purchase at most.
    payment_reference: str | None = Field(default=None, max_length=255)
    status_reason: str | None = Field(default=None, max_length=500)
    refunded_cents: int = 0
    # Credits the reversals stand for, and what could be taken back (the rest was spent).
    revocation_target: int = 0
    revoked_credits: int = 0
    # Store purchases: packs bought at once, and when the store was told they were
    # delivered (Google's consume, after the credits committed).
    quantity: int = 1
    store_product_id: str | None = Field(default=None, max_length=255)
    store_finished_at: datetime | None = _utc(default=None, nullable=True)

    __table_args__ = (
        sa.CheckConstraint("remaining >= 0", name="ck_pack_purchases_remaining_nonneg"),
        sa.CheckConstraint(
            "revoked_credits >= 0 AND revocation_target >= 0",
            name="ck_pack_purchases_revoked_nonneg",
        ),
        sa.Index("ix_pack_purchases_live", "account_id", "expires_at"),
        sa.Index("ux_pack_purchases_session", "provider", "checkout_session_id", unique=True),
        sa.Index("ux_pack_purchases_payment", "provider", "payment_reference", unique=True),
        sa.Index("ix_pack_purchases_status", "status", "created_at"),
        sa.Index("ix_pack_purchases_account", "account_id", "created_at", "id"),
        sa.Index("ix_pack_purchases_unfinished", "provider", "store_finished_at"),
    )


class PaymentEventRow(SQLModel, table=True):
    """A provider webhook event acted on; its id is stored once, so a redelivery is a no-op."""

    __tablename__ = "payment_events"
    provider: str = Field(primary_key=True, max_length=16)
    event_id: str = Field(primary_key=True, max_length=255)
    event_type: str = Field(max_length=64)
    purchase_id: str | None = Field(default=None, max_length=36)
    outcome: str = Field(max_length=32)
    received_at: datetime = _utc()


class PurchaseReversalRow(SQLModel, table=True):
    """A refund or dispute of a purchase's payment, applied once by the provider's id."""

    __tablename__ = "purchase_reversals"
    provider: str = Field(primary_key=True, max_length=16)
    reversal_id: str = Field(primary_key=True, max_length=255)
    purchase_id: str = Field(foreign_key="pack_purchases.id", index=True, max_length=36)
    kind: str = Field(max_length=16)
    amount_cents: int
    # REFUND: APPLIED; DISPUTE: OPEN, WON or LOST.
    state: str = Field(max_length=16)
    credits_target: int
    credits_revoked: int
    created_at: datetime = _utc()
    closed_at: datetime | None = _utc(default=None, nullable=True)
    # When the provider reported the state recorded (a store's signedDate).
    reported_at: datetime | None = _utc(default=None, nullable=True)


class CreditAdjustmentRow(SQLModel, table=True):
    """Support's adjustment of an account (``adjustCredits``), with its reason and actor.

    A positive one is also a bonus lot: ``remaining`` of it is unspent and unexpired, until
    ``expires_at``. A negative one (a correction) has no lot: remaining 0, no expiry.
    """

    __tablename__ = "credit_adjustments"
    id: str = Field(primary_key=True, max_length=36)
    account_id: str = Field(foreign_key="accounts.id", max_length=36)
    amount: int
    remaining: int = 0
    reason: str = Field(max_length=500)
    actor: str = Field(max_length=255)
    created_at: datetime = _utc()
    expires_at: datetime | None = _utc(default=None, nullable=True)

    __table_args__ = (
        sa.CheckConstraint("remaining >= 0", name="ck_credit_adjustments_remaining_nonneg"),
        sa.CheckConstraint("amount <> 0", name="ck_credit_adjustments_amount_nonzero"),
        sa.Index("ix_credit_adjustments_live", "account_id", "expires_at"),
        sa.Index("ix_credit_adjustments_expiry", "expires_at"),
    )


# Runs in progress (the domain's ACTIVE_STATUSES), as a partial index's predicate and as the
# state read writes it (plans.ACTIVE): literals, so the planner can match the two.
ACTIVE_LITERALS = tuple(f"'{s.value}'" for s in sorted(ACTIVE_STATUSES, key=lambda s: s.value))
ACTIVE_PREDICATE = f"status IN ({', '.join(ACTIVE_LITERALS)})"


class GenerationRow(SQLModel, table=True):
    __tablename__ = "generations"
    id: str = Field(primary_key=True, max_length=36)
    account_id: str = Field(foreign_key="accounts.id", max_length=36)
    tool: str = Field(max_length=32)
    cost: int
    status: str = Field(max_length=16)
    prompt: str | None = Field(default=None, max_length=4000)
    created_at: datetime = _utc()
    started_at: datetime | None = _utc(default=None, nullable=True)
    finished_at: datetime | None = _utc(default=None, nullable=True)
    result_url: str | None = Field(default=None, max_length=2048)
    failure_reason: str | None = Field(default=None, max_length=2000)

    __table_args__ = (
        sa.Index("ix_generations_account", "account_id", "created_at", "id"),
        sa.Index("ix_generations_queue", "status", "tool", "created_at"),
        # An account's runs in progress (the per-plan cap counts them on every run).
        sa.Index(
            "ix_generations_active",
            "account_id",
            postgresql_where=sa.text(ACTIVE_PREDICATE),
            sqlite_where=sa.text(ACTIVE_PREDICATE),
        ),
    )


class HoldRow(SQLModel, table=True):
    """Credits a generation took from one bucket, until it is settled or released."""

    __tablename__ = "holds"
    id: int | None = Field(default=None, sa_type=BigIntId, primary_key=True)
    generation_id: str = Field(foreign_key="generations.id", index=True, max_length=36)
    account_id: str = Field(foreign_key="accounts.id", max_length=36)
    bucket: str = Field(max_length=16)
    lot_id: str | None = Field(default=None, max_length=36)
    # The subscription cycle that subscription credits were held from.
    subscription_id: str | None = Field(default=None, max_length=36)
    cycle_index: int | None = None
    amount: int
    status: str = Field(max_length=16)

    __table_args__ = (sa.CheckConstraint("amount > 0", name="ck_holds_amount_positive"),)


class LedgerEntryRow(SQLModel, table=True):
    """Immutable: triggers on both backends refuse UPDATE and DELETE."""

    __tablename__ = "ledger_entries"
    id: int | None = Field(default=None, sa_type=BigIntId, primary_key=True)
    account_id: str = Field(foreign_key="accounts.id", max_length=36)
    kind: str = Field(max_length=16)
    bucket: str = Field(max_length=16)
    amount: int
    balance_after: int
    reference_type: str = Field(max_length=16)
    reference_id: str | None = Field(default=None, max_length=255)
    lot_id: str | None = Field(default=None, max_length=36)
    occurred_at: datetime = _utc()
    recorded_at: datetime = _utc()
    # Adjustments only: support's reason and who made it (the service token's subject).
    reason: str | None = Field(default=None, max_length=500)
    actor: str | None = Field(default=None, max_length=255)

    __table_args__ = (
        sa.Index("ix_ledger_account", "account_id", "id"),
        sa.CheckConstraint("balance_after >= 0", name="ck_ledger_balance_nonneg"),
    )


class IdempotencyRow(SQLModel, table=True):
    __tablename__ = "idempotency_keys"
    account_id: str = Field(foreign_key="accounts.id", primary_key=True, max_length=36)
    key: str = Field(primary_key=True, max_length=255)
    operation: str = Field(max_length=32)
    fingerprint: str = Field(max_length=64)
    result_id: str = Field(max_length=36)
    created_at: datetime = _utc()


class WebhookEndpointRow(SQLModel, table=True):
    """A receiver of the platform's events. The secret signs (Standard Webhooks); after a
    rotation the previous one signs alongside until ``previous_secret_expires_at``."""

    __tablename__ = "webhook_endpoints"
    id: str = Field(primary_key=True, max_length=40)
    url: str = Field(max_length=2048)
    description: str | None = Field(default=None, max_length=500)
    # ",credits.low,pack.purchased," (commas around each); "" for every event type.
    event_types: str = Field(default="", max_length=1000)
    secret: str = Field(max_length=100)
    previous_secret: str | None = Field(default=None, max_length=100)
    previous_secret_expires_at: datetime | None = _utc(default=None, nullable=True)
    enabled: bool = True
    disabled_at: datetime | None = _utc(default=None, nullable=True)
    # The first failure since the last success: 5 days of that disables the endpoint.
    failing_since: datetime | None = _utc(default=None, nullable=True)
    created_at: datetime = _utc()
    updated_at: datetime = _utc()


class WebhookEventRow(SQLModel, table=True):
    """The outbox: one row per event, written in the transaction of the change it describes.

    ``payload`` is the JSON body without ledger entry ids; ``ledger_entry_ids`` are the ids of
    the write's entries in posting order ("12,13"), filled in by the entries' positions."""

    __tablename__ = "webhook_events"
    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(max_length=36)
    event_type: str = Field(max_length=40)
    payload: str
    ledger_entry_ids: str | None = None
    created_at: datetime = _utc()


class WebhookDeliveryRow(SQLModel, table=True):
    """One event owed to one endpoint: PENDING until DELIVERED or FAILED (retries spent)."""

    __tablename__ = "webhook_deliveries"
    id: int | None = Field(default=None, sa_type=BigIntId, primary_key=True)
    event_id: str = Field(foreign_key="webhook_events.id", max_length=40)
    endpoint_id: str = Field(foreign_key="webhook_endpoints.id", max_length=40)
    account_id: str = Field(max_length=36)
    event_type: str = Field(max_length=40)
    status: str = Field(default="PENDING", max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = _utc()
    # A worker claimed it until then (sending); after that another worker may claim it.
    leased_until: datetime | None = _utc(default=None, nullable=True)
    last_attempt_at: datetime | None = _utc(default=None, nullable=True)
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    delivered_at: datetime | None = _utc(default=None, nullable=True)
    created_at: datetime = _utc()

    __table_args__ = (
        sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        sa.Index("ix_webhook_deliveries_order", "endpoint_id", "account_id", "id"),
    )
