"""The plans and their monthly allowances (configurable, defaults in settings)."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.domain.model import Plan


@dataclass(frozen=True, slots=True)
class PlanCatalog:
    monthly_credits: dict[Plan, int]
    # Generations QUEUED or RUNNING at once per account on each plan; 0 (or absent): no cap.
    max_active_generations: dict[Plan, int] = field(default_factory=dict)
    # Below how many credits an account on each plan is "low" (credits.low); absent: 10%
    # of its monthly allowance.
    low_balance: dict[Plan, int] = field(default_factory=dict)

    def allowance(self, plan: Plan) -> int:
        return self.monthly_credits[plan]

    def active_limit(self, plan: Plan | None) -> int:
        """The cap on runs at once; an account without a plan has no credits to cap."""
        return self.max_active_generations.get(plan, 0) if plan is not None else 0
