"""Mutation inputs."""

from __future__ import annotations

from datetime import datetime

import strawberry

from graphql_schema.enums import BillingInterval, Plan, Store, Tool


@strawberry.input
class PurchasePackInput:
    pack_id: strawberry.ID
    idempotency_key: str = strawberry.field(
        description="Unique per purchase; a retry with the same key returns the first result."
    )
    account_id: strawberry.ID | None = strawberry.field(
        default=None, description="Service tokens only: the account to act for."
    )


@strawberry.input
class RunGeneratorInput:
    tool: Tool
    idempotency_key: str = strawberry.field(
        description="Unique per run; a retry with the same key returns the first result."
    )
    prompt: str | None = None
    account_id: strawberry.ID | None = strawberry.field(
        default=None, description="Service tokens only: the account to act for."
    )


@strawberry.input
class CreateAccountInput:
    email: str


@strawberry.input
class StartSubscriptionInput:
    account_id: strawberry.ID
    plan: Plan
    interval: BillingInterval
    started_at: datetime | None = strawberry.field(
        default=None, description="Anchor of the monthly cycles; now when omitted, never future."
    )


@strawberry.input(description="The plan and billing an active subscription moves to.")
class ChangeSubscriptionInput:
    account_id: strawberry.ID
    plan: Plan
    interval: BillingInterval


@strawberry.input(description="Support adjusts an account's credits, with a reason.")
class AdjustCreditsInput:
    account_id: strawberry.ID
    amount: int = strawberry.field(
        description="Positive: a bonus lot (BONUS bucket). Negative: a correction taken in "
        "spend order. Not 0."
    )
    reason: str = strawberry.field(description="Why, for the ledger: 1 to 500 characters.")
    idempotency_key: str = strawberry.field(
        description="Unique per adjustment of this account; a retry returns the first result."
    )
    expires_at: datetime | None = strawberry.field(
        default=None,
        description="A bonus only: when it expires (in the future); the next renewal when omitted.",
    )


@strawberry.input(
    description="A purchase made in an app store: APP_STORE sends signedTransaction, "
    "GOOGLE_PLAY sends purchaseToken and productId."
)
class RedeemStorePurchaseInput:
    store: Store
    signed_transaction: str | None = strawberry.field(
        default=None,
        description="APP_STORE: the StoreKit 2 transaction's JWS (jwsRepresentation), bought "
        "with appAccountToken set to the account id.",
    )
    purchase_token: str | None = strawberry.field(
        default=None,
        description="GOOGLE_PLAY: the Purchase's purchaseToken, bought with "
        "obfuscatedAccountId set to the account id.",
    )
    product_id: str | None = strawberry.field(
        default=None,
        description="GOOGLE_PLAY: the product bought (required); APP_STORE: checked if given.",
    )
