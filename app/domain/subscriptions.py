"""A subscription's terms and the statuses they imply at a given moment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from app.domain.cycles import cycle_end, cycle_index_at
from app.domain.errors import InvalidInput
from app.domain.model import BillingInterval, Plan, SubscriptionStatus


def utc_anchor(started_at: datetime) -> datetime:
    """A given start as the UTC instant its cycles are counted from, or a typed refusal."""
    if started_at.tzinfo is None or started_at.utcoffset() is None:
        raise InvalidInput("startedAt", "startedAt needs a UTC offset.")
    try:
        return started_at.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first instant Python has
        raise InvalidInput("startedAt", "startedAt is out of range.") from None


@dataclass(frozen=True, slots=True)
class SubscriptionTerms:
    plan: Plan
    interval: BillingInterval
    started_at: datetime
    monthly_credits: int
    canceled_at: datetime | None = None
    # When the start was recorded: the instant its first cycle was opened in the ledger.
    recorded_at: datetime | None = None

    def ends_at(self) -> datetime | None:
        """End of the cycle it was cancelled in; None while it renews."""
        if self.canceled_at is None:
            return None
        return cycle_end(self.started_at, cycle_index_at(self.started_at, self.canceled_at))

    def renews_at(self, moment: datetime) -> bool:
        """Whether a cycle starts at ``moment``: no new cycles once it has ended."""
        ends = self.ends_at()
        return ends is None or moment < ends

    def status_at(self, now: datetime) -> SubscriptionStatus:
        ends = self.ends_at()
        if ends is None:
            return SubscriptionStatus.ACTIVE
        return SubscriptionStatus.CANCELED if now < ends else SubscriptionStatus.EXPIRED

    def allows_packs_at(self, now: datetime) -> bool:
        """Packs need a subscription that will renew: ACTIVE, not merely running out."""
        return self.status_at(now) is SubscriptionStatus.ACTIVE
