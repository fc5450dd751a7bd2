"""Turning a service call into a GraphQL result: success, union member or top-level error."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, get_type_hints

import strawberry
from strawberry.types.union import StrawberryUnion

from app.domain.errors import CreditError
from graphql_schema.context import Context, Info
from graphql_schema.engine.observability import noted_result
from graphql_schema.errors import forbidden, to_api_error

T = TypeVar("T")
R = TypeVar("R")


async def as_result(info: Info, call: Awaitable[T], success: Callable[[T], R]) -> R | Any:
    """Run ``call``; an expected error becomes the member of the field's result union that
    stands for it, else a top-level error with its code (graphql_schema/errors.py)."""
    try:
        return noted_result(success(await call))
    except CreditError as exc:
        union = info.return_type
        members = error_members(union) if isinstance(union, StrawberryUnion) else {}
        for kind in type(exc).__mro__:
            member = members.get(kind)
            if member is not None:
                return noted_result(member.from_domain(exc))
        raise to_api_error(exc) from None


@functools.cache
def error_members(union: StrawberryUnion) -> Mapping[type[CreditError], Any]:
    """The union's members that stand for a domain error, by that error: read off each
    member's ``from_domain(exc: SomeError)``, so the union's annotation is the only list."""
    found: dict[type[CreditError], Any] = {}
    for member in union.types:
        from_domain = getattr(member, "from_domain", None)
        if from_domain is None:
            continue
        hints = get_type_hints(from_domain)
        hints.pop("return", None)
        source = next(iter(hints.values()), None)
        if isinstance(source, type) and issubclass(source, CreditError):
            found[source] = member
    return found


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
