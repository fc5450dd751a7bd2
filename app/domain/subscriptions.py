"""A subscription's terms and the statuses they imply at a given moment."""

from __future__ import annotations

from dataclasses import dataclass, replace
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
class ScheduledChange:
    """A downgrade waiting for the renewal at ``from_at``: from then on, this plan."""

    plan: Plan
    monthly_credits: int
    from_at: datetime


@dataclass(frozen=True, slots=True)
class SubscriptionTerms:
    plan: Plan
    interval: BillingInterval
    started_at: datetime
    monthly_credits: int
    canceled_at: datetime | None = None
    # When the start was recorded: the instant its first cycle was opened in the ledger.
    recorded_at: datetime | None = None
    scheduled: ScheduledChange | None = None

    def allowance_at(self, renewal_at: datetime) -> int:
        """What the renewal at ``renewal_at`` grants: a scheduled plan's from its date on."""
        if self.scheduled is not None and renewal_at >= self.scheduled.from_at:
            return self.scheduled.monthly_credits
        return self.monthly_credits

    def as_of(self, moment: datetime) -> SubscriptionTerms:
        """The terms in force at ``moment``: a scheduled change takes over once it is due."""
        change = self.scheduled
        if change is None or moment < change.from_at:
            return self
        return replace(
            self, plan=change.plan, monthly_credits=change.monthly_credits, scheduled=None
        )

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


@dataclass(frozen=True, slots=True)
class PlanChange:
    """What changing plan or billing does now: a grant, new terms, or a change scheduled."""

    plan: Plan
    interval: BillingInterval
    monthly_credits: int
    grant: int = 0
    scheduled: ScheduledChange | None = None


def change_plan(
    terms: SubscriptionTerms,
    plan: Plan,
    interval: BillingInterval,
    allowance: int,
    cycle_ends_at: datetime,
) -> PlanChange | None:
    """An upgrade takes effect at once (the cycle's balance grows by the difference); a
    downgrade at the next renewal; an interval change keeps the anchor (credits are monthly
    either way). None when nothing changes."""
    effective = terms.scheduled.plan if terms.scheduled else terms.plan
    if plan is effective and interval is terms.interval:
        return None
    if plan is terms.plan:  # the same plan (a scheduled downgrade, if any, is dropped)
        return PlanChange(plan, interval, terms.monthly_credits)
    if allowance >= terms.monthly_credits:
        return PlanChange(plan, interval, allowance, grant=allowance - terms.monthly_credits)
    return PlanChange(
        terms.plan,
        interval,
        terms.monthly_credits,
        scheduled=ScheduledChange(plan, allowance, cycle_ends_at),
    )
