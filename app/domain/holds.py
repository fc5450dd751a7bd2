"""Releasing a failed run's hold: credits go back to the buckets they came from, once.

A portion goes back only if its bucket still lives: subscription credits to the same monthly
cycle, pack credits to a lot that has not expired. Otherwise the credits expire, as they would
have if they had never been held.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.domain.model import Bucket


@dataclass(frozen=True, slots=True)
class HeldPortion:
    bucket: Bucket
    amount: int
    # (subscription id, cycle index) the subscription credits were held from.
    cycle: tuple[str | None, int | None] = (None, None)
    lot_id: str | None = None
    lot_expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Release:
    portion: HeldPortion
    expires: bool


def release(
    portions: list[HeldPortion], *, cycle: tuple[str | None, int | None], now: datetime
) -> list[Release]:
    """How each held portion comes back; ``cycle`` is the account's current one."""
    releases = []
    for portion in portions:
        if portion.bucket is Bucket.SUBSCRIPTION:
            alive = cycle[1] is not None and portion.cycle == cycle
        else:
            alive = portion.lot_expires_at is not None and now < portion.lot_expires_at
        releases.append(Release(portion, expires=not alive))
    return releases
