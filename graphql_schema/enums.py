"""The domain's enums, exposed under their public GraphQL names."""

from __future__ import annotations

from typing import TYPE_CHECKING

import strawberry

from app.domain import model, purchases, store_purchases
from app.payments.sandbox import SandboxOutcome

if TYPE_CHECKING:
    # ``strawberry.enum`` returns the very class it is given: to mypy, the domain's enums.
    from app.domain.model import BillingInterval as BillingInterval
    from app.domain.model import Bucket as Bucket
    from app.domain.model import GenerationStatus as GenerationStatus
    from app.domain.model import LedgerKind as LedgerKind
    from app.domain.model import Plan as Plan
    from app.domain.model import SubscriptionStatus as SubscriptionStatus
    from app.domain.model import Tool as Tool
    from app.domain.purchases import ProviderName as PaymentProvider
    from app.domain.purchases import PurchaseStatus as PurchaseStatus
    from app.domain.store_purchases import Store as Store
    from app.domain.store_purchases import StoreProblem as StorePurchaseProblem
    from app.payments.sandbox import SandboxOutcome as SandboxPaymentOutcome
else:
    Tool = strawberry.enum(model.Tool, name="Tool")
    Plan = strawberry.enum(model.Plan, name="Plan")
    BillingInterval = strawberry.enum(model.BillingInterval, name="BillingInterval")
    SubscriptionStatus = strawberry.enum(model.SubscriptionStatus, name="SubscriptionStatus")
    Bucket = strawberry.enum(model.Bucket, name="Bucket")
    LedgerKind = strawberry.enum(model.LedgerKind, name="LedgerKind")
    GenerationStatus = strawberry.enum(model.GenerationStatus, name="GenerationStatus")
    PurchaseStatus = strawberry.enum(purchases.PurchaseStatus, name="PurchaseStatus")
    PaymentProvider = strawberry.enum(purchases.ProviderName, name="PaymentProvider")
    SandboxPaymentOutcome = strawberry.enum(SandboxOutcome, name="SandboxPaymentOutcome")
    Store = strawberry.enum(store_purchases.Store, name="Store")
    StorePurchaseProblem = strawberry.enum(
        store_purchases.StoreProblem, name="StorePurchaseProblem"
    )
