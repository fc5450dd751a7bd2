"""Read models of what the services write: purchases, generations, ledger entries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.domain.model import Bucket, GenerationStatus, LedgerKind, Tool
from app.domain.purchases import ProviderName, PurchaseStatus


@dataclass(frozen=True, slots=True)
class Tariff:
    tool: Tool
    credits: int


@dataclass(frozen=True, slots=True)
class CreditPack:
    id: str
    credits: int
    price_cents: int
    currency: str
    # The product that sells this pack in each app store, if any.
    app_store_product_id: str | None = None
    google_play_product_id: str | None = None


@dataclass(frozen=True, slots=True)
class PackPurchase:
    id: str
    account_id: str
    pack_id: str
    credits: int
    price_cents: int
    currency: str
    status: PurchaseStatus
    provider: ProviderName
    created_at: datetime
    # Set once the payment is confirmed and the pack credited.
    purchased_at: datetime | None
    expires_at: datetime | None
    checkout_url: str | None = None
    status_reason: str | None = None
    refunded_cents: int = 0
    revoked_credits: int = 0
    # Credits the refunds and disputes stand for; short of it means they were spent.
    revocation_target: int = 0


@dataclass(frozen=True, slots=True)
class Generation:
    id: str
    account_id: str
    tool: Tool
    cost: int
    status: GenerationStatus
    prompt: str | None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result_url: str | None = None
    failure_reason: str | None = None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: int
    account_id: str
    kind: LedgerKind
    bucket: Bucket
    amount: int
    balance_after: int
    reference_type: str
    reference_id: str | None
    occurred_at: datetime
    # An adjustment's reason and who made it.
    reason: str | None = None
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class CreditAdjustment:
    """Support's adjustment: a bonus lot (positive) or a correction (negative)."""

    id: str
    account_id: str
    amount: int
    reason: str
    actor: str
    created_at: datetime
    # A bonus's expiry and what is left of it; a correction has neither.
    expires_at: datetime | None
    remaining: int
