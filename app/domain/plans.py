"""The plans and their monthly allowances (configurable, defaults in settings)."""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.model import Plan


@dataclass(frozen=True, slots=True)
class PlanCatalog:
    monthly_credits: dict[Plan, int]

    def allowance(self, plan: Plan) -> int:
        return self.monthly_credits[plan]
