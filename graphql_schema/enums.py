"""The domain's enums, exposed under their public GraphQL names."""

from __future__ import annotations

import strawberry

from app.domain import model, purchases
from app.payments.sandbox import SandboxOutcome

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
