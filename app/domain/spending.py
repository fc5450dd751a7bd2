"""The spend order: subscription credits first, then packs by earliest expiry, oldest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.domain.errors import InsufficientCredits
from app.domain.model import Bucket


@dataclass(frozen=True, slots=True)
class PackLot:
    """The unspent rest of one purchased pack."""

    id: str
    remaining: int
    expires_at: datetime
    purchased_at: datetime


@dataclass(frozen=True, slots=True)
class Portion:
    """Part of a charge taken from one bucket (and, for packs, one lot)."""

    bucket: Bucket
    amount: int
    lot_id: str | None = None


def allocate(cost: int, subscription_balance: int, lots: list[PackLot]) -> list[Portion]:
    """Split ``cost`` over the buckets in spend order, or refuse it whole."""
    if cost <= 0:
        raise ValueError("a charge must be positive")
    available = subscription_balance + sum(lot.remaining for lot in lots)
    if available < cost:
        raise InsufficientCredits(required=cost, available=available)
    portions: list[Portion] = []
    left = cost
    from_subscription = min(left, subscription_balance)
    if from_subscription:
        portions.append(Portion(Bucket.SUBSCRIPTION, from_subscription))
        left -= from_subscription
    for lot in sorted(lots, key=lambda lot: (lot.expires_at, lot.purchased_at, lot.id)):
        if not left:
            break
        take = min(left, lot.remaining)
        if take:
            portions.append(Portion(Bucket.PACK, take, lot.id))
            left -= take
    return portions
