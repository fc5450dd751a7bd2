"""Mutation results: success types and the expected errors, as union members."""

from __future__ import annotations

from typing import Annotated, Self

import strawberry

from app.domain import errors
from app.services.adjustments import CreditsAdjusted as CreditsAdjustedResult
from app.services.fulfilment import PackPurchased as PackPurchasedResult
from app.services.fulfilment import PaymentPending as PaymentPendingResult
from app.services.fulfilment import PurchaseClosed as PurchaseClosedResult
from app.services.fulfilment import PurchaseOutcome
from app.services.generations import GenerationFinished
from app.services.generations import GeneratorRun as GeneratorRunResult
from graphql_schema.enums import StorePurchaseProblem
from graphql_schema.types import Account, CreditAdjustment, Generation, PackPurchase


@strawberry.interface(description="An expected failure; nothing was changed.")
class Error:
    message: str


class GenerationOutcome:
    """Successes that carry a generation and its account as they stand after the call."""

    @classmethod
    def from_domain(cls, result: GeneratorRunResult | GenerationFinished) -> Self:
        return cls(
            generation=Generation.from_domain(result.generation),  # type: ignore[call-arg]
            account=Account.from_domain(result.account),
        )


@strawberry.type
class PackPurchased:
    purchase: PackPurchase
    account: Account

    @classmethod
    def from_domain(cls, result: PackPurchasedResult) -> PackPurchased:
        return cls(
            purchase=PackPurchase.from_domain(result.purchase),
            account=Account.from_domain(result.account),
        )


@strawberry.type(
    description="Nothing is credited until the payment is confirmed: send the user to "
    "checkoutUrl, then call confirmPackPurchase (or wait for purchaseUpdated)."
)
class PaymentPending:
    purchase: PackPurchase
    checkout_url: str | None
    message: str

    @classmethod
    def from_domain(cls, result: PaymentPendingResult) -> PaymentPending:
        return cls(
            purchase=PackPurchase.from_domain(result.purchase),
            checkout_url=result.checkout_url,
            message="Waiting for the payment; the credits are added once it is confirmed.",
        )


CLOSED_MESSAGES = {
    "FAILED": "The payment failed; nothing was credited. Start a new purchase to try again.",
    "EXPIRED": "The checkout expired unpaid; nothing was credited.",
    "REFUND_PENDING": "The payment could not be used and is being refunded.",
    "REFUNDED": "The payment was refunded; the pack's credits were revoked.",
    "DISPUTED": "The payment is disputed; the pack's credits are withheld.",
    "REVOKED": "The payment was reversed; the pack's credits were revoked.",
}


@strawberry.type(description="The purchase ended without credits, or lost them.")
class PurchaseClosed(Error):
    purchase: PackPurchase

    @classmethod
    def from_domain(cls, result: PurchaseClosedResult) -> PurchaseClosed:
        status = result.purchase.status.value
        message = result.purchase.status_reason or CLOSED_MESSAGES.get(status, status)
        return cls(message=message, purchase=PackPurchase.from_domain(result.purchase))


def purchase_result(outcome: PurchaseOutcome) -> PackPurchased | PaymentPending | PurchaseClosed:
    if isinstance(outcome, PackPurchasedResult):
        return PackPurchased.from_domain(outcome)
    if isinstance(outcome, PaymentPendingResult):
        return PaymentPending.from_domain(outcome)
    return PurchaseClosed.from_domain(outcome)


def store_result(outcome: PurchaseOutcome) -> PackPurchased | PurchaseClosed:
    """A store purchase is credited when redeemed, or closed since (refunded at the store)."""
    if isinstance(outcome, PackPurchasedResult):
        return PackPurchased.from_domain(outcome)
    assert isinstance(outcome, PurchaseClosedResult)
    return PurchaseClosed.from_domain(outcome)


@strawberry.type
class PurchaseNotFound(Error):
    purchase_id: strawberry.ID

    @classmethod
    def from_domain(cls, exc: errors.PurchaseNotFound) -> PurchaseNotFound:
        return cls(message=exc.message, purchase_id=strawberry.ID(exc.purchase_id))


@strawberry.type(description="The payment provider could not be reached; retry with the key.")
class PaymentProviderUnavailable(Error):
    @classmethod
    def from_domain(cls, exc: errors.PaymentProviderUnavailable) -> PaymentProviderUnavailable:
        return cls(message=exc.message)


@strawberry.type(
    description="The store proof cannot be credited (reason says why); nothing was credited "
    "and, at Google, nothing consumed."
)
class StorePurchaseInvalid(Error):
    reason: StorePurchaseProblem

    @classmethod
    def from_domain(cls, exc: errors.StorePurchaseInvalid) -> StorePurchaseInvalid:
        return cls(message=exc.message, reason=exc.reason)


@strawberry.type(
    description="This store purchase is already credited to another account; nothing changed."
)
class StorePurchaseAlreadyRedeemed(Error):
    @classmethod
    def from_domain(cls, exc: errors.StorePurchaseAlreadyRedeemed) -> StorePurchaseAlreadyRedeemed:
        return cls(message=exc.message)


@strawberry.type
class GeneratorRun(GenerationOutcome):
    generation: Generation
    account: Account


@strawberry.type
class SubscriptionRequired(Error):
    @classmethod
    def from_domain(cls, exc: errors.SubscriptionRequired) -> SubscriptionRequired:
        return cls(message=exc.message)


@strawberry.type
class PackNotFound(Error):
    pack_id: strawberry.ID

    @classmethod
    def from_domain(cls, exc: errors.PackNotFound) -> PackNotFound:
        return cls(message=exc.message, pack_id=strawberry.ID(exc.pack_id))


@strawberry.type
class IdempotencyConflict(Error):
    idempotency_key: str

    @classmethod
    def from_domain(cls, exc: errors.IdempotencyConflict) -> IdempotencyConflict:
        return cls(message=exc.message, idempotency_key=exc.key)


@strawberry.type
class InsufficientCredits(Error):
    required: int
    available: int

    @classmethod
    def from_domain(cls, exc: errors.InsufficientCredits) -> InsufficientCredits:
        return cls(message=exc.message, required=exc.required, available=exc.available)


@strawberry.type(description="The run succeeded; its held credits are now spent.")
class GenerationCompleted(GenerationOutcome):
    generation: Generation
    account: Account


@strawberry.type(
    description="The run was cancelled before it started; its credits went back where they "
    "came from."
)
class GenerationCanceled(GenerationOutcome):
    generation: Generation
    account: Account


@strawberry.type(
    description="The plan's cap on generations queued or running at once is reached; "
    "nothing was charged."
)
class TooManyActiveGenerations(Error):
    limit: int
    active: int

    @classmethod
    def from_domain(cls, exc: errors.TooManyActiveGenerations) -> TooManyActiveGenerations:
        return cls(message=exc.message, limit=exc.limit, active=exc.active)


@strawberry.type(description="The run failed; its held credits went back where they came from.")
class GenerationFailed(GenerationOutcome):
    generation: Generation
    account: Account


@strawberry.type
class GenerationNotFound(Error):
    generation_id: strawberry.ID

    @classmethod
    def from_domain(cls, exc: errors.GenerationNotFound) -> GenerationNotFound:
        return cls(message=exc.message, generation_id=strawberry.ID(exc.generation_id))


@strawberry.type(
    description="The generation is not in a state that allows this (a complete of a job "
    "never claimed, a cancel of a running one, anything on a finished one): nothing changed; "
    "here is how it stands."
)
class InvalidGenerationTransition(Error):
    generation: Generation

    @classmethod
    def from_domain(cls, exc: errors.InvalidTransition) -> InvalidGenerationTransition:
        return cls(message=exc.message, generation=Generation.from_domain(exc.generation))


@strawberry.type(description="The adjustment was made (or, for a retry, had been).")
class CreditsAdjusted:
    adjustment: CreditAdjustment
    account: Account

    @classmethod
    def from_domain(cls, result: CreditsAdjustedResult) -> CreditsAdjusted:
        return cls(
            adjustment=CreditAdjustment.from_domain(result.adjustment),
            account=Account.from_domain(result.account),
        )


PurchasePackResult = Annotated[
    PackPurchased
    | PaymentPending
    | PurchaseClosed
    | SubscriptionRequired
    | PackNotFound
    | IdempotencyConflict
    | PaymentProviderUnavailable,
    strawberry.union("PurchasePackResult"),
]
RedeemStorePurchaseResult = Annotated[
    PackPurchased
    | PurchaseClosed
    | SubscriptionRequired
    | PackNotFound
    | StorePurchaseInvalid
    | StorePurchaseAlreadyRedeemed
    | PaymentProviderUnavailable,
    strawberry.union("RedeemStorePurchaseResult"),
]
ConfirmPackPurchaseResult = Annotated[
    PackPurchased | PaymentPending | PurchaseClosed | PurchaseNotFound,
    strawberry.union("ConfirmPackPurchaseResult"),
]
RunGeneratorResult = Annotated[
    GeneratorRun | InsufficientCredits | TooManyActiveGenerations | IdempotencyConflict,
    strawberry.union("RunGeneratorResult"),
]

CompleteGenerationResult = Annotated[
    GenerationCompleted | GenerationNotFound | InvalidGenerationTransition,
    strawberry.union("CompleteGenerationResult"),
]
CancelGenerationResult = Annotated[
    GenerationCanceled | GenerationNotFound | InvalidGenerationTransition,
    strawberry.union("CancelGenerationResult"),
]
FailGenerationResult = Annotated[
    GenerationFailed | GenerationNotFound | InvalidGenerationTransition,
    strawberry.union("FailGenerationResult"),
]
AdjustCreditsResult = Annotated[
    CreditsAdjusted | InsufficientCredits | IdempotencyConflict,
    strawberry.union("AdjustCreditsResult"),
]
