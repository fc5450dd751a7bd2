"""Where domain errors cross into GraphQL: one table of codes for top-level errors.

Errors a client is expected to handle are union members (see ``results.py``); the rest of
the expected ones become top-level errors with ``extensions.code``. Anything else is an
unexpected error and is masked.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from graphql import GraphQLError

from app.auth import InvalidToken
from app.domain import errors

TOP_LEVEL_CODES: dict[type[Exception], str] = {
    errors.InvalidInput: "BAD_USER_INPUT",
    errors.AccountNotFound: "NOT_FOUND",
    errors.GenerationNotFound: "NOT_FOUND",
    errors.PackNotFound: "NOT_FOUND",
    errors.EmailTaken: "CONFLICT",
    errors.SubscriptionAlreadyActive: "CONFLICT",
    errors.NoActiveSubscription: "CONFLICT",
    errors.SubscriptionRequired: "CONFLICT",
    errors.InsufficientCredits: "CONFLICT",
    errors.IdempotencyConflict: "CONFLICT",
    errors.InvalidTransition: "CONFLICT",
    errors.PurchaseNotFound: "NOT_FOUND",
    errors.TooManyActiveGenerations: "CONFLICT",
    errors.PaymentProviderUnavailable: "PAYMENT_PROVIDER_UNAVAILABLE",
    InvalidToken: "UNAUTHENTICATED",
}

# Request errors, as Apollo Server names them: the document, or its variables, refused.
PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
BAD_USER_INPUT = "BAD_USER_INPUT"

# Codes clients may see; errors carrying one are never masked.
PUBLIC_CODES = frozenset(
    {
        *TOP_LEVEL_CODES.values(),
        "UNAUTHENTICATED",
        "FORBIDDEN",
        "BAD_USER_INPUT",
        "RATE_LIMITED",
        "PERSISTED_QUERY_NOT_FOUND",
        "PERSISTED_QUERY_NOT_IN_LIST",
        PARSE_FAILED,
        VALIDATION_FAILED,
    }
)


class ApiError(GraphQLError):
    def __init__(self, message: str, code: str, **extra: object) -> None:
        super().__init__(message, extensions={"code": code, **extra})


def unauthenticated(message: str = "Sign in: send 'Authorization: Bearer <token>'.") -> ApiError:
    return ApiError(message, "UNAUTHENTICATED")


def forbidden(message: str = "This token may not do that.") -> ApiError:
    return ApiError(message, "FORBIDDEN")


def bad_input(message: str, field: str | None = None) -> ApiError:
    return ApiError(message, "BAD_USER_INPUT", **({"field": field} if field else {}))


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
