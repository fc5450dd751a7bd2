"""One error map: each result union's members name the domain errors they stand for."""

from __future__ import annotations

from strawberry.types.union import StrawberryUnion

from app.domain import errors
from graphql_schema import results
from graphql_schema.errors import PUBLIC_CODES, TOP_LEVEL_CODES, Code
from graphql_schema.resolving import error_members
from graphql_schema.schema import create_schema


def _union(field: str) -> StrawberryUnion:
    schema = create_schema()
    definition = schema.get_type_by_name("Mutation")
    union = next(f for f in definition.fields if f.python_name == field).type  # type: ignore[union-attr]
    assert isinstance(union, StrawberryUnion)
    return union


def test_a_union_maps_exactly_the_errors_its_annotation_lists() -> None:
    assert error_members(_union("run_generator")) == {
        errors.InsufficientCredits: results.InsufficientCredits,
        errors.TooManyActiveGenerations: results.TooManyActiveGenerations,
        errors.IdempotencyConflict: results.IdempotencyConflict,
    }
    assert error_members(_union("purchase_pack")) == {
        errors.SubscriptionRequired: results.SubscriptionRequired,
        errors.PackNotFound: results.PackNotFound,
        errors.IdempotencyConflict: results.IdempotencyConflict,
        errors.PaymentProviderUnavailable: results.PaymentProviderUnavailable,
    }
    assert error_members(_union("fail_generation")) == {
        errors.GenerationNotFound: results.GenerationNotFound,
        errors.InvalidTransition: results.InvalidGenerationTransition,
    }


def test_every_domain_error_has_a_top_level_code_clients_may_read() -> None:
    leaves = {kind for kind in vars(errors).values() if _is_leaf_error(kind)}

    assert leaves <= set(TOP_LEVEL_CODES)
    assert {code.value for code in TOP_LEVEL_CODES.values()} <= PUBLIC_CODES
    assert {code.value for code in Code} == PUBLIC_CODES


def _is_leaf_error(kind: object) -> bool:
    return (
        isinstance(kind, type)
        and issubclass(kind, errors.CreditError)
        and kind is not errors.CreditError
        and not kind.__subclasses__()
    )
