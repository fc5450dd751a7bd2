"""Releasing a failed run's hold: credits go back to the buckets they came from, once.

A portion goes back only if its bucket still lives: subscription credits to the same monthly
cycle, pack credits to a lot that has not expired. Otherwise the credits expire, as they would
have if they had never been held.

Both are judged against the cycle the account has recorded (brought up to date under its
lock), never against a clock reading: a lot lives exactly while the account's cycle is the one
it was bought in (its expiry is that cycle's end), so a reading taken before a renewal that
another request recorded cannot revive expired credits.

Bonus credits go back to their bonus lot while it lives: its expiry is a date of its own, so
it is judged against the write's acting instant (taken under the lock, never before what the
account recorded); a lot dated at a cycle's end is dead once that renewal is recorded.
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
class RecordedCycle:
    """The account's cycle as recorded under its lock: no cycle once its plan has ended."""

    subscription_id: str | None
    index: int | None
    ends_at: datetime | None


@dataclass(frozen=True, slots=True)
class Release:
    portion: HeldPortion
    expires: bool


def lot_is_live(expires_at: datetime, cycle: RecordedCycle) -> bool:
    """A lot lives while the account's recorded cycle ends no later than the lot does."""
    return cycle.index is not None and cycle.ends_at is not None and cycle.ends_at <= expires_at


def bonus_is_live(expires_at: datetime, now: datetime) -> bool:
    """A bonus lot lives until its expiry; at that instant it is gone."""
    return now < expires_at


def release(
    portions: list[HeldPortion], cycle: RecordedCycle, now: datetime | None = None
) -> list[Release]:
    """How each held portion comes back to an account in its recorded ``cycle``.

    ``now``: the write's acting instant, which bonus lots are judged by.
    """
    releases = []
    for portion in portions:
        if portion.bucket is Bucket.BONUS:
            alive = (
                portion.lot_expires_at is not None
                and now is not None
                and bonus_is_live(portion.lot_expires_at, now)
            )
        elif portion.bucket is Bucket.SUBSCRIPTION:
            alive = cycle.index is not None and portion.cycle == (
                cycle.subscription_id,
                cycle.index,
            )
        else:
            alive = portion.lot_expires_at is not None and lot_is_live(
                portion.lot_expires_at, cycle
            )
        releases.append(Release(portion, expires=not alive))
    return releases
