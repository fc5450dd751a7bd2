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
    # Credits support granted (``adjustCredits``), in lots with their own expiry.
    BONUS = "BONUS"


class LedgerKind(enum.StrEnum):
    GRANT = "GRANT"
    SPEND = "SPEND"
    REFUND = "REFUND"
    EXPIRY = "EXPIRY"
    # Credits a refund or a lost dispute took back from a pack.
    REVOCATION = "REVOCATION"
    # A correction by support: a bonus lot granted, or credits taken back, with a reason.
    ADJUSTMENT = "ADJUSTMENT"


class GenerationStatus(enum.StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    # Taken back by its owner (or a service) before any worker claimed it.
    CANCELED = "CANCELED"


class HoldStatus(enum.StrEnum):
    """A generation's held credits: open while it runs, then settled (spent) or released."""

    OPEN = "OPEN"
    SETTLED = "SETTLED"
    RELEASED = "RELEASED"


class ReferenceType(enum.StrEnum):
    """What a ledger entry's ``reference_id`` names."""

    GENERATION = "GENERATION"
    PURCHASE = "PURCHASE"
    RENEWAL = "RENEWAL"
    SUBSCRIPTION = "SUBSCRIPTION"
    REFUND = "REFUND"
    DISPUTE = "DISPUTE"
    ADJUSTMENT = "ADJUSTMENT"
