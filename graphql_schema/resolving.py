"""Turning a service call into a GraphQL result: success, union member or top-level error."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import strawberry

from app.domain.errors import CreditError
from graphql_schema.context import Context
from graphql_schema.errors import forbidden, to_api_error
from graphql_schema.observability import noted_result
from graphql_schema.results import UNION_MEMBERS

T = TypeVar("T")
R = TypeVar("R")


async def as_result(
    call: Awaitable[T], success: Callable[[T], R], members: tuple[type, ...]
) -> R | Any:
    """Run ``call``; map an expected error to its union member if the field has it."""
    try:
        return noted_result(success(await call))
    except CreditError as exc:
        member = UNION_MEMBERS.get(type(exc))
        if member is not None and member in members:
            return noted_result(member.from_domain(exc))  # type: ignore[attr-defined]
        raise to_api_error(exc) from None


def acting_account(context: Context, account_id: strawberry.ID | None) -> str:
    """Whose credits a mutation moves: the user's own, or the one a service token names."""
    principal = context.require_principal()
    if principal.is_service:
        if account_id is None:
            raise forbidden("A service token must name the accountId to act for.")
        return str(account_id)
    assert principal.account_id is not None
    if account_id is not None and str(account_id) != principal.account_id:
        raise forbidden("A user token acts on its own account only.")
    return principal.account_id
