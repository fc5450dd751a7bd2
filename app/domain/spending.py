"""The spend order: subscription credits first, then bonus lots, then packs; lots by earliest
expiry, oldest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.domain.errors import InsufficientCredits
from app.domain.model import Bucket


@dataclass(frozen=True, slots=True)
class PackLot:
    """The unspent rest of one purchased pack (or of one bonus, granted at ``purchased_at``)."""

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


def lot_order(lot: PackLot) -> tuple[datetime, datetime, str]:
    """Within a bucket: the lot that expires first, then the oldest, then by id."""
    return (lot.expires_at, lot.purchased_at, lot.id)


def allocate(
    cost: int,
    subscription_balance: int,
    lots: list[PackLot],
    bonus_lots: list[PackLot] | None = None,
    *,
    what: str = "This run costs",
) -> list[Portion]:
    """Split ``cost`` over the buckets in spend order, or refuse it whole.

    Subscription credits first (they are lost soonest, at the renewal), then bonus lots (a
    gift, spent before what the user paid for), then packs.
    """
    if cost <= 0:
        raise ValueError("a charge must be positive")
    bonus = bonus_lots or []
    available = (
        subscription_balance
        + sum(lot.remaining for lot in bonus)
        + sum(lot.remaining for lot in lots)
    )
    if available < cost:
        raise InsufficientCredits(required=cost, available=available, what=what)
    portions: list[Portion] = []
    left = cost
    from_subscription = min(left, subscription_balance)
    if from_subscription:
        portions.append(Portion(Bucket.SUBSCRIPTION, from_subscription))
        left -= from_subscription
    for bucket, in_bucket in ((Bucket.BONUS, bonus), (Bucket.PACK, lots)):
        for lot in sorted(in_bucket, key=lot_order):
            if not left:
                break
            take = min(left, lot.remaining)
            if take:
                portions.append(Portion(bucket, take, lot.id))
                left -= take
    return portions
