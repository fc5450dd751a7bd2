"""Object types, each built from a domain value with ``from_domain``."""

from __future__ import annotations

from datetime import datetime

import strawberry

from app.domain.accounts import AccountView, SubscriptionView
from app.domain.records import CreditAdjustment as CreditAdjustmentRecord
from app.domain.records import CreditPack as CreditPackRecord
from app.domain.records import Generation as GenerationRecord
from app.domain.records import LedgerEntry as LedgerEntryRecord
from app.domain.records import PackPurchase as PackPurchaseRecord
from app.domain.records import Tariff as TariffRecord
from app.services import history
from graphql_schema.context import Info
from graphql_schema.engine.limits import page_size
from graphql_schema.enums import (
    BillingInterval,
    Bucket,
    GenerationStatus,
    LedgerKind,
    PaymentProvider,
    Plan,
    PurchaseStatus,
    SubscriptionStatus,
    Tool,
)
from graphql_schema.errors import or_error
from graphql_schema.pagination import (
    Connection,
    connection,
    decode_generation_cursor,
    decode_ledger_cursor,
    decode_purchase_cursor,
    generation_cursor,
    ledger_cursor,
    purchase_cursor,
)


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
    scheduled_plan: Plan | None = strawberry.field(
        description="A downgrade that takes effect at scheduledAt (the next renewal)."
    )
    scheduled_at: datetime | None

    @classmethod
    def from_domain(cls, view: SubscriptionView) -> Subscription:
        terms = view.terms
        scheduled = terms.scheduled
        return cls(
            scheduled_plan=scheduled.plan if scheduled else None,
            scheduled_at=scheduled.from_at if scheduled else None,
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
    credits_total: int = strawberry.field(description="Subscription plus bonus plus pack credits.")
    subscription_balance: int
    pack_balance: int
    pack_expires_at: datetime | None = strawberry.field(
        description="When the pack credits expire: the next monthly renewal."
    )
    bonus_balance: int = strawberry.field(
        description="Bonus credits support granted: spent after subscription credits, before packs."
    )
    bonus_expires_at: datetime | None = strawberry.field(
        description="When the first of the bonus credits expire."
    )
    next_renewal_at: datetime | None
    subscription: Subscription | None

    @strawberry.field(description="This account's runs, newest first.")
    async def generations(
        self,
        info: Info,
        first: int | None = 20,
        after: str | None = None,
        status: GenerationStatus | None = None,
    ) -> Connection[Generation]:
        size = page_size(first, info.context.lists)
        page = await or_error(
            history.generations_page(
                str(self.id), size, decode_generation_cursor(after), status, info.context.services
            )
        )
        return connection(
            page.items,
            page.has_next_page,
            Generation.from_domain,
            lambda g: generation_cursor(g.created_at, g.id),
        )

    @strawberry.field(description="Every change of this account's balances, newest first.")
    async def ledger(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Connection[LedgerEntry]:
        size = page_size(first, info.context.lists)
        page = await or_error(
            history.ledger_page(
                str(self.id), size, decode_ledger_cursor(after), info.context.services
            )
        )
        return connection(
            page.items, page.has_next_page, LedgerEntry.from_domain, lambda e: ledger_cursor(e.id)
        )

    @strawberry.field(description="Runs QUEUED or RUNNING now; the plan caps how many.")
    async def active_generations(self, info: Info) -> int:
        return await or_error(history.active_generations(str(self.id), info.context.services))

    @strawberry.field(description="This account's pack purchases, newest first.")
    async def purchases(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Connection[PackPurchase]:
        size = page_size(first, info.context.lists)
        page = await or_error(
            history.purchases_page(
                str(self.id), size, decode_purchase_cursor(after), info.context.services
            )
        )
        return connection(
            page.items,
            page.has_next_page,
            PackPurchase.from_domain,
            lambda p: purchase_cursor(p.created_at, p.id),
        )

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
            bonus_balance=view.bonus_balance,
            bonus_expires_at=view.bonus_expires_at,
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
    max_active_generations: int = strawberry.field(
        description="Generations QUEUED or RUNNING at once per account; 0 means no cap."
    )


@strawberry.type
class CreditPack:
    id: strawberry.ID
    credits: int
    price_cents: int
    currency: str
    app_store_product_id: str | None = strawberry.field(
        description="The App Store product that sells this pack (redeemStorePurchase)."
    )
    google_play_product_id: str | None = strawberry.field(
        description="The Google Play product that sells this pack (redeemStorePurchase)."
    )

    @classmethod
    def from_domain(cls, pack: CreditPackRecord) -> CreditPack:
        return cls(
            id=strawberry.ID(pack.id),
            credits=pack.credits,
            price_cents=pack.price_cents,
            currency=pack.currency,
            app_store_product_id=pack.app_store_product_id,
            google_play_product_id=pack.google_play_product_id,
        )


@strawberry.type(
    description="One pack bought: paid for first, then credited; its credits expire at the "
    "next monthly renewal after they were credited."
)
class PackPurchase:
    id: strawberry.ID
    pack_id: strawberry.ID
    credits: int
    price_cents: int = strawberry.field(description="Copied from the catalog at purchase.")
    currency: str
    status: PurchaseStatus
    provider: PaymentProvider
    created_at: datetime
    fulfilled_at: datetime | None = strawberry.field(
        description="When the payment was confirmed and the credits granted."
    )
    purchased_at: datetime | None = strawberry.field(
        description="Same as fulfilledAt; null until the payment is confirmed."
    )
    expires_at: datetime | None = strawberry.field(
        description="When the pack's credits expire; null until they are granted."
    )
    checkout_url: str | None = strawberry.field(
        description="Where to pay, while the purchase is PENDING."
    )
    status_reason: str | None = strawberry.field(
        description="Why it failed, expired or was refunded without being credited."
    )
    refunded_cents: int
    revoked_credits: int = strawberry.field(
        description="Credits refunds and disputes took back from the pack."
    )
    revocation_target: int = strawberry.field(
        description="Credits the refunds and disputes stand for; above revokedCredits when "
        "the rest had already been spent."
    )

    @classmethod
    def from_domain(cls, purchase: PackPurchaseRecord) -> PackPurchase:
        return cls(
            id=strawberry.ID(purchase.id),
            pack_id=strawberry.ID(purchase.pack_id),
            credits=purchase.credits,
            price_cents=purchase.price_cents,
            currency=purchase.currency,
            status=purchase.status,
            provider=purchase.provider,
            created_at=purchase.created_at,
            fulfilled_at=purchase.purchased_at,
            purchased_at=purchase.purchased_at,
            expires_at=purchase.expires_at,
            checkout_url=purchase.checkout_url,
            status_reason=purchase.status_reason,
            refunded_cents=purchase.refunded_cents,
            revoked_credits=purchase.revoked_credits,
            revocation_target=purchase.revocation_target,
        )


@strawberry.type(description="One generator run and where it stands.")
class Generation:
    id: strawberry.ID
    account_id: strawberry.ID
    tool: Tool
    cost: int
    status: GenerationStatus
    prompt: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result_url: str | None
    failure_reason: str | None

    @classmethod
    def from_domain(cls, generation: GenerationRecord) -> Generation:
        return cls(
            id=strawberry.ID(generation.id),
            account_id=strawberry.ID(generation.account_id),
            tool=generation.tool,
            cost=generation.cost,
            status=generation.status,
            prompt=generation.prompt,
            created_at=generation.created_at,
            started_at=generation.started_at,
            finished_at=generation.finished_at,
            result_url=generation.result_url,
            failure_reason=generation.failure_reason,
        )


@strawberry.type(description="One immutable change of a bucket's balance.")
class LedgerEntry:
    id: strawberry.ID
    kind: LedgerKind
    bucket: Bucket
    amount: int = strawberry.field(description="Signed: grants and refunds add, the rest take.")
    balance_after: int = strawberry.field(description="The bucket's balance after this entry.")
    reference_type: str = strawberry.field(
        description="SUBSCRIPTION, RENEWAL, PURCHASE, GENERATION, REFUND, DISPUTE or ADJUSTMENT."
    )
    reference_id: strawberry.ID | None = strawberry.field(
        description="The subscription, purchase, generation or adjustment the entry belongs to."
    )
    occurred_at: datetime
    reason: str | None = strawberry.field(description="An ADJUSTMENT's reason.")
    actor: str | None = strawberry.field(
        description="Who made an ADJUSTMENT: the service token's subject."
    )

    @classmethod
    def from_domain(cls, entry: LedgerEntryRecord) -> LedgerEntry:
        return cls(
            id=strawberry.ID(str(entry.id)),
            kind=entry.kind,
            bucket=entry.bucket,
            amount=entry.amount,
            balance_after=entry.balance_after,
            reference_type=entry.reference_type,
            reference_id=strawberry.ID(entry.reference_id) if entry.reference_id else None,
            occurred_at=entry.occurred_at,
            reason=entry.reason,
            actor=entry.actor,
        )


@strawberry.type(
    description="Support's adjustment: a bonus lot (positive amount) or a correction (negative)."
)
class CreditAdjustment:
    id: strawberry.ID
    account_id: strawberry.ID
    amount: int
    reason: str
    actor: str = strawberry.field(description="The service token's subject.")
    created_at: datetime
    expires_at: datetime | None = strawberry.field(description="A bonus's expiry.")
    remaining: int = strawberry.field(
        description="What is left of a bonus lot (0 for a correction)."
    )

    @classmethod
    def from_domain(cls, adjustment: CreditAdjustmentRecord) -> CreditAdjustment:
        return cls(
            id=strawberry.ID(adjustment.id),
            account_id=strawberry.ID(adjustment.account_id),
            amount=adjustment.amount,
            reason=adjustment.reason,
            actor=adjustment.actor,
            created_at=adjustment.created_at,
            expires_at=adjustment.expires_at,
            remaining=adjustment.remaining,
        )
