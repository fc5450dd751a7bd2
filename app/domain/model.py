"""The business's vocabulary: enums and small value types shared by every layer."""

from __future__ import annotations

import enum


class Tool(enum.StrEnum):
    TURBO = "TURBO"
    PRO = "PRO"
    ULTRA = "ULTRA"
    STYLE_TRANSFER = "STYLE_TRANSFER"
    BACKGROUND_REMOVAL = "BACKGROUND_REMOVAL"


class Plan(enum.StrEnum):
    STARTER = "STARTER"
    PRO = "PRO"


class BillingInterval(enum.StrEnum):
    MONTHLY = "MONTHLY"
    ANNUAL = "ANNUAL"


class SubscriptionStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    # Cancelled, but the current cycle has not ended: credits stay spendable.
    CANCELED = "CANCELED"
    # Cancelled and the cycle it was cancelled in has ended.
    EXPIRED = "EXPIRED"


class Bucket(enum.StrEnum):
    SUBSCRIPTION = "SUBSCRIPTION"
    PACK = "PACK"


class LedgerKind(enum.StrEnum):
    GRANT = "GRANT"
    SPEND = "SPEND"
    REFUND = "REFUND"
    EXPIRY = "EXPIRY"
    # Credits a refund or a lost dispute took back from a pack.
    REVOCATION = "REVOCATION"


class GenerationStatus(enum.StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    # Taken back by its owner (or a service) before any worker claimed it.
    CANCELED = "CANCELED"
