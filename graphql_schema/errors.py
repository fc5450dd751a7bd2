"""Where domain errors cross into GraphQL: one table of codes for top-level errors.

Union members name the domain error they stand for in their ``from_domain`` (read by
``resolving.as_result`` from the field's result union), so no second table lists them.

Errors a client is expected to handle are union members (see ``results.py``); the rest of
the expected ones become top-level errors with ``extensions.code``. Anything else is an
unexpected error and is masked.
"""

from __future__ import annotations

from collections.abc import Awaitable
from enum import StrEnum
from typing import TypeVar

from graphql import GraphQLError

from app.auth import InvalidToken
from app.domain import errors


class Code(StrEnum):
    """Every ``extensions.code`` a client may read: the one table of top-level codes. An
    error carrying one of these is expected and never masked."""

    UNAUTHENTICATED = "UNAUTHENTICATED"  # no, bad or expired token
    FORBIDDEN = "FORBIDDEN"  # another account's data, or a user token on a service field
    BAD_USER_INPUT = "BAD_USER_INPUT"  # with ``field``
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    PAYMENT_PROVIDER_UNAVAILABLE = "PAYMENT_PROVIDER_UNAVAILABLE"
    # The database was unreachable or the connection broke (a failover): try again, with
    # the same idempotency key; the outcome of a write is unknown until then.
    TRY_AGAIN = "TRY_AGAIN"
    RATE_LIMITED = "RATE_LIMITED"  # with ``retryAfter`` and ``scope``
    PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
    PERSISTED_QUERY_NOT_IN_LIST = "PERSISTED_QUERY_NOT_IN_LIST"
    TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"  # websocket, with ``limit``
    # Request errors, as Apollo Server names them: the document refused.
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"


# Domain errors that reach the client as top-level errors (outside a result union).
TOP_LEVEL_CODES: dict[type[Exception], Code] = {
    errors.InvalidInput: Code.BAD_USER_INPUT,
    errors.AccountNotFound: Code.NOT_FOUND,
    errors.GenerationNotFound: Code.NOT_FOUND,
    errors.PackNotFound: Code.NOT_FOUND,
    errors.EmailTaken: Code.CONFLICT,
    errors.SubscriptionAlreadyActive: Code.CONFLICT,
    errors.NoActiveSubscription: Code.CONFLICT,
    errors.SubscriptionRequired: Code.CONFLICT,
    errors.InsufficientCredits: Code.CONFLICT,
    errors.IdempotencyConflict: Code.CONFLICT,
    errors.InvalidTransition: Code.CONFLICT,
    errors.PurchaseNotFound: Code.NOT_FOUND,
    errors.TooManyActiveGenerations: Code.CONFLICT,
    errors.PaymentProviderUnavailable: Code.PAYMENT_PROVIDER_UNAVAILABLE,
    errors.StorePurchaseInvalid: Code.BAD_USER_INPUT,
    errors.StorePurchaseAlreadyRedeemed: Code.CONFLICT,
    errors.DatabaseUnavailable: Code.TRY_AGAIN,
    InvalidToken: Code.UNAUTHENTICATED,
}

PUBLIC_CODES = frozenset(code.value for code in Code)
PARSE_FAILED = Code.GRAPHQL_PARSE_FAILED.value
VALIDATION_FAILED = Code.GRAPHQL_VALIDATION_FAILED.value
BAD_USER_INPUT = Code.BAD_USER_INPUT.value


class ApiError(GraphQLError):
    def __init__(self, message: str, code: str, **extra: object) -> None:
        super().__init__(message, extensions={"code": code, **extra})


def unauthenticated(message: str = "Sign in: send 'Authorization: Bearer <token>'.") -> ApiError:
    return ApiError(message, Code.UNAUTHENTICATED)


def forbidden(message: str = "This token may not do that.") -> ApiError:
    return ApiError(message, Code.FORBIDDEN)


def bad_input(message: str, field: str | None = None) -> ApiError:
    return ApiError(message, Code.BAD_USER_INPUT, **({"field": field} if field else {}))


def coded(errors: list[GraphQLError], code: str) -> list[GraphQLError]:
    """``errors``, each given ``extensions.code`` unless it has one (in place: cached
    validation results are the same errors every time)."""
    for error in errors:
        if not (error.extensions or {}).get("code"):
            error.extensions = {**(error.extensions or {}), "code": code}
    return errors


def to_api_error(exc: errors.CreditError | InvalidToken) -> ApiError:
    for kind, code in TOP_LEVEL_CODES.items():
        if isinstance(exc, kind):
            field = getattr(exc, "field", None)
            message = exc.message if isinstance(exc, errors.CreditError) else str(exc)
            return ApiError(message, code, **({"field": field} if field else {}))
    raise TypeError(f"no code for {type(exc).__name__}")


T = TypeVar("T")


async def or_error(call: Awaitable[T]) -> T:
    """Run ``call``; expected errors become top-level errors with a code."""
    try:
        return await call
    except errors.CreditError as exc:
        raise to_api_error(exc) from None


def is_unexpected(error: GraphQLError) -> bool:
    """Mask only what we did not mean to say: errors without a public code."""
    code = (error.extensions or {}).get("code")
    if code in PUBLIC_CODES:
        return False
    # Parse and validation errors have no original exception; they describe the document.
    # Variable values the operation refuses carry one, a GraphQLError on the input (no path).
    cause = error.original_error
    if isinstance(cause, GraphQLError) and cause.original_error is None and error.path is None:
        return False
    return cause is not None
