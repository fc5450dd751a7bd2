"""Mutation results: success types and the expected errors, as union members."""

from __future__ import annotations

from typing import Annotated, Self

import strawberry

from app.domain import errors
from app.services.generations import GenerationFinished
from app.services.generations import GeneratorRun as GeneratorRunResult
from app.services.packs import PackPurchased as PackPurchasedResult
from graphql_schema.types import Account, Generation, PackPurchase


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
    description="The generation is not RUNNING (not claimed, or already finished): nothing "
    "changed; here is how it stands."
)
class InvalidGenerationTransition(Error):
    generation: Generation

    @classmethod
    def from_domain(cls, exc: errors.InvalidTransition) -> InvalidGenerationTransition:
        return cls(message=exc.message, generation=Generation.from_domain(exc.generation))


PurchasePackResult = Annotated[
    PackPurchased | SubscriptionRequired | PackNotFound | IdempotencyConflict,
    strawberry.union("PurchasePackResult"),
]
RunGeneratorResult = Annotated[
    GeneratorRun | InsufficientCredits | IdempotencyConflict,
    strawberry.union("RunGeneratorResult"),
]

CompleteGenerationResult = Annotated[
    GenerationCompleted | GenerationNotFound | InvalidGenerationTransition,
    strawberry.union("CompleteGenerationResult"),
]
FailGenerationResult = Annotated[
    GenerationFailed | GenerationNotFound | InvalidGenerationTransition,
    strawberry.union("FailGenerationResult"),
]

# The one table that says which domain error becomes which union member.
UNION_MEMBERS: dict[type[errors.CreditError], type] = {
    errors.SubscriptionRequired: SubscriptionRequired,
    errors.PackNotFound: PackNotFound,
    errors.IdempotencyConflict: IdempotencyConflict,
    errors.InsufficientCredits: InsufficientCredits,
    errors.GenerationNotFound: GenerationNotFound,
    errors.InvalidTransition: InvalidGenerationTransition,
}
