"""Mutation resolvers: check who may act, call one service, map the result."""

from __future__ import annotations

import strawberry

from app.domain.store_purchases import Store
from app.payments.port import StoreProof
from app.services import (
    accounts,
    adjustments,
    generations,
    packs,
    payment_events,
    store_purchases,
    subscriptions,
)
from graphql_schema.context import Info
from graphql_schema.enums import SandboxPaymentOutcome, Tool
from graphql_schema.errors import forbidden, or_error
from graphql_schema.inputs import (
    AdjustCreditsInput,
    ChangeSubscriptionInput,
    CreateAccountInput,
    PurchasePackInput,
    RedeemStorePurchaseInput,
    RunGeneratorInput,
    StartSubscriptionInput,
)
from graphql_schema.resolving import acting_account, as_result
from graphql_schema.results import (
    AdjustCreditsResult,
    CancelGenerationResult,
    CompleteGenerationResult,
    ConfirmPackPurchaseResult,
    CreditsAdjusted,
    FailGenerationResult,
    GenerationCanceled,
    GenerationCompleted,
    GenerationFailed,
    GeneratorRun,
    PurchasePackResult,
    RedeemStorePurchaseResult,
    RunGeneratorResult,
    purchase_result,
    store_result,
)
from graphql_schema.types import Account, Generation
from graphql_schema.webhooks import WebhookMutations


@strawberry.type
class Mutation(WebhookMutations):
    @strawberry.mutation(
        description="Buy a credit pack; needs an active subscription. Credited once paid: "
        "PaymentPending until then (PackPurchased when the provider confirms at once)."
    )
    async def purchase_pack(self, info: Info, input: PurchasePackInput) -> PurchasePackResult:
        account_id = acting_account(info.context, input.account_id)
        call = packs.purchase_pack(
            account_id, str(input.pack_id), input.idempotency_key, info.context.services
        )
        return await as_result(info, call, purchase_result)

    @strawberry.mutation(
        description="User token. Credit a pack bought in the App Store or Google Play, once: "
        "the same proof again returns the same purchase. Needs an active subscription "
        "(SubscriptionRequired: nothing is credited, and Google refunds the purchase)."
    )
    async def redeem_store_purchase(
        self, info: Info, input: RedeemStorePurchaseInput
    ) -> RedeemStorePurchaseResult:
        principal = info.context.require_principal()
        account_id = acting_account(info.context, None) if not principal.is_service else None
        if account_id is None:
            raise forbidden("A store purchase is redeemed with the buyer's user token.")
        proof = StoreProof(
            Store(input.store),
            signed_transaction=input.signed_transaction,
            purchase_token=input.purchase_token,
            product_id=input.product_id,
        )
        call = store_purchases.redeem_store_purchase(account_id, proof, info.context.services)
        return await as_result(info, call, store_result)

    @strawberry.mutation(
        description="The user is back from checkout: ask the provider now. Own purchase "
        "(user token) or any (service token). Safe to call any number of times."
    )
    async def confirm_pack_purchase(
        self, info: Info, purchase_id: strawberry.ID
    ) -> ConfirmPackPurchaseResult:
        principal = info.context.require_principal()
        owner = None if principal.is_service else principal.account_id
        call = packs.confirm_pack_purchase(str(purchase_id), owner, info.context.services)
        return await as_result(info, call, purchase_result)

    @strawberry.mutation(description="Run a tool; its cost is held until the run settles.")
    async def run_generator(self, info: Info, input: RunGeneratorInput) -> RunGeneratorResult:
        account_id = acting_account(info.context, input.account_id)
        call = generations.run_generator(
            account_id, input.tool, input.idempotency_key, input.prompt, info.context.services
        )
        return await as_result(info, call, GeneratorRun.from_domain)

    @strawberry.mutation(
        description="Take back a QUEUED run (its owner's user token, or a service token); "
        "its credits go back where they came from. RUNNING or finished: "
        "InvalidGenerationTransition."
    )
    async def cancel_generation(self, info: Info, id: strawberry.ID) -> CancelGenerationResult:
        principal = info.context.require_principal()
        owner = None if principal.is_service else principal.account_id
        call = generations.cancel_generation(str(id), owner, info.context.services)
        return await as_result(info, call, GenerationCanceled.from_domain)

    @strawberry.mutation(description="Service token.")
    async def create_account(self, info: Info, input: CreateAccountInput) -> Account:
        info.context.require_service()
        view = await or_error(accounts.create_account(input.email, info.context.services))
        return Account.from_domain(view)

    @strawberry.mutation(description="Service token. startedAt may not be in the future.")
    async def start_subscription(self, info: Info, input: StartSubscriptionInput) -> Account:
        info.context.require_service()
        call = subscriptions.start_subscription(
            str(input.account_id),
            input.plan,
            input.interval,
            input.started_at,
            info.context.services,
        )
        return Account.from_domain(await or_error(call))

    @strawberry.mutation(
        description="Service token. An upgrade (STARTER to PRO) takes effect at once: this "
        "cycle's subscription credits grow by the difference. A downgrade takes effect at the "
        "next renewal (subscription.scheduledPlan until then). The anchor never moves. "
        "A cancelled subscription: CONFLICT."
    )
    async def change_subscription(self, info: Info, input: ChangeSubscriptionInput) -> Account:
        info.context.require_service()
        call = subscriptions.change_subscription(
            str(input.account_id), input.plan, input.interval, info.context.services
        )
        return Account.from_domain(await or_error(call))

    @strawberry.mutation(
        description="Service token (support): a positive amount grants a bonus lot (spent "
        "after subscription credits, before packs; expires at expiresAt or the next renewal), "
        "a negative one takes credits back in spend order. One ADJUSTMENT entry per bucket "
        "moved, with the reason and the token's subject."
    )
    async def adjust_credits(self, info: Info, input: AdjustCreditsInput) -> AdjustCreditsResult:
        principal = info.context.require_service()
        call = adjustments.adjust_credits(
            str(input.account_id),
            input.amount,
            input.reason,
            input.idempotency_key,
            input.expires_at,
            principal.subject or "service",
            info.context.services,
        )
        return await as_result(info, call, CreditsAdjusted.from_domain)

    @strawberry.mutation(description="Service token. No new cycles; credits last the cycle.")
    async def cancel_subscription(self, info: Info, account_id: strawberry.ID) -> Account:
        info.context.require_service()
        call = subscriptions.cancel_subscription(str(account_id), info.context.services)
        return Account.from_domain(await or_error(call))

    @strawberry.mutation(
        description="Service token (workers): take up to `limit` queued jobs, oldest first. "
        "Each job is handed to one worker only."
    )
    async def claim_generations(
        self, info: Info, limit: int, tools: list[Tool] | None = None
    ) -> list[Generation]:
        info.context.require_service()
        claimed = await or_error(generations.claim_generations(tools, limit, info.context.services))
        return [Generation.from_domain(g) for g in claimed]

    @strawberry.mutation(description="Service token (workers): the run succeeded; settle it.")
    async def complete_generation(
        self, info: Info, id: strawberry.ID, result_url: str
    ) -> CompleteGenerationResult:
        info.context.require_service()
        call = generations.complete_generation(str(id), result_url, info.context.services)
        return await as_result(info, call, GenerationCompleted.from_domain)

    @strawberry.mutation(
        description="Service token (workers, dispatchers): the run failed, or was refused "
        "before it started (QUEUED); its credits go back, once."
    )
    async def fail_generation(
        self, info: Info, id: strawberry.ID, reason: str
    ) -> FailGenerationResult:
        info.context.require_service()
        call = generations.fail_generation(str(id), reason, info.context.services)
        return await as_result(info, call, GenerationFailed.from_domain)


@strawberry.type(name="Mutation")
class SandboxMutation(Mutation):
    """The mutations, and with the sandbox provider, a way to end its payments at will."""

    @strawberry.mutation(
        description="Sandbox payments only, service token: end a sandbox payment as a real "
        "provider would report it (paid, failed, refunded, disputed, ...)."
    )
    async def sandbox_settle_payment(
        self, info: Info, purchase_id: strawberry.ID, outcome: SandboxPaymentOutcome
    ) -> ConfirmPackPurchaseResult:
        info.context.require_service()
        call = payment_events.sandbox_settle(str(purchase_id), outcome, info.context.services)
        return await as_result(info, call, purchase_result)
