"""Object types, each built from a domain value with ``from_domain``."""

from __future__ import annotations

from datetime import datetime

import strawberry

from app.domain.accounts import AccountView, SubscriptionView
from app.domain.records import CreditPack as CreditPackRecord
from app.domain.records import Generation as GenerationRecord
from app.domain.records import PackPurchase as PackPurchaseRecord
from app.domain.records import Tariff as TariffRecord
from graphql_schema.enums import BillingInterval, GenerationStatus, Plan, SubscriptionStatus, Tool


@strawberry.type(description="A subscription: its plan, how it is billed and where it stands.")
class Subscription:
    id: strawberry.ID
    plan: Plan
    interval: BillingInterval
    status: SubscriptionStatus
    monthly_credits: int
    started_at: datetime
    canceled_at: datetime | None
    ends_at: datetime | None = strawberry.field(
        description="When a cancelled subscription stops; null while it renews."
    )

    @classmethod
    def from_domain(cls, view: SubscriptionView) -> Subscription:
        terms = view.terms
        return cls(
            id=strawberry.ID(view.id),
            plan=terms.plan,
            interval=terms.interval,
            status=view.status,
            monthly_credits=terms.monthly_credits,
            started_at=terms.started_at,
            canceled_at=terms.canceled_at,
            ends_at=terms.ends_at(),
        )


@strawberry.type(
    description="An account's credits: the total for the editor, parts for the dashboard."
)
class Account:
    id: strawberry.ID
    email: str
    created_at: datetime
    credits_total: int = strawberry.field(description="Subscription plus pack credits.")
    subscription_balance: int
    pack_balance: int
    pack_expires_at: datetime | None = strawberry.field(
        description="When the pack credits expire: the next monthly renewal."
    )
    next_renewal_at: datetime | None
    subscription: Subscription | None

    @classmethod
    def from_domain(cls, view: AccountView) -> Account:
        return cls(
            id=strawberry.ID(view.id),
            email=view.email,
            created_at=view.created_at,
            credits_total=view.credits_total,
            subscription_balance=view.subscription_balance,
            pack_balance=view.pack_balance,
            pack_expires_at=view.pack_expires_at,
            next_renewal_at=view.next_renewal_at,
            subscription=Subscription.from_domain(view.subscription) if view.subscription else None,
        )


@strawberry.type
class Tariff:
    tool: Tool
    credits: int

    @classmethod
    def from_domain(cls, tariff: TariffRecord) -> Tariff:
        return cls(tool=tariff.tool, credits=tariff.credits)


@strawberry.type
class PlanInfo:
    plan: Plan
    monthly_credits: int


@strawberry.type
class CreditPack:
    id: strawberry.ID
    credits: int
    price_cents: int
    currency: str

    @classmethod
    def from_domain(cls, pack: CreditPackRecord) -> CreditPack:
        return cls(
            id=strawberry.ID(pack.id),
            credits=pack.credits,
            price_cents=pack.price_cents,
            currency=pack.currency,
        )


@strawberry.type(description="One bought pack; its credits expire at the next monthly renewal.")
class PackPurchase:
    id: strawberry.ID
    pack_id: strawberry.ID
    credits: int
    price_cents: int
    currency: str
    purchased_at: datetime
    expires_at: datetime

    @classmethod
    def from_domain(cls, purchase: PackPurchaseRecord) -> PackPurchase:
        return cls(
            id=strawberry.ID(purchase.id),
            pack_id=strawberry.ID(purchase.pack_id),
            credits=purchase.credits,
            price_cents=purchase.price_cents,
            currency=purchase.currency,
            purchased_at=purchase.purchased_at,
            expires_at=purchase.expires_at,
        )


@strawberry.type(description="One generator run and where it stands.")
class Generation:
    id: strawberry.ID
    tool: Tool
    cost: int
    status: GenerationStatus
    prompt: str | None
    created_at: datetime
    finished_at: datetime | None
    result_url: str | None
    failure_reason: str | None

    @classmethod
    def from_domain(cls, generation: GenerationRecord) -> Generation:
        return cls(
            id=strawberry.ID(generation.id),
            tool=generation.tool,
            cost=generation.cost,
            status=generation.status,
            prompt=generation.prompt,
            created_at=generation.created_at,
            finished_at=generation.finished_at,
            result_url=generation.result_url,
            failure_reason=generation.failure_reason,
        )
