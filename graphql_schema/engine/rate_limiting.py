"""Mutations count against the caller's budgets before they run; over budget, nothing runs.

Each mutation field in a document counts once, so aliases can't multiply one call.
Service tokens are trusted backends and are not counted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    OperationDefinitionNode,
    SelectionSetNode,
)
from strawberry.types.graphql import OperationType

from app.auth import Principal
from app.security.rate_limits import RateLimiter, Refusal
from graphql_schema.context import Context
from graphql_schema.errors import ApiError, Code

if TYPE_CHECKING:
    from graphql_schema.engine.operations import Operation


def rate_limited(refusal: Refusal) -> ApiError:
    return ApiError(
        f"Too many mutations for this {refusal.scope}; retry in {refusal.retry_after} s.",
        Code.RATE_LIMITED,
        retryAfter=refusal.retry_after,
        scope=refusal.scope,
    )


class MutationRateLimit:
    """A guard (graphql_schema/engine/operations.py): counts mutations against the budgets."""

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter
        # Each document's count, worked out once: the operation, by identity, with it (the
        # document cache hands out the same objects); bounded, dropped whole when full.
        self._costs: dict[int, tuple[OperationDefinitionNode, int]] = {}

    async def __call__(self, operation: Operation) -> GraphQLError | None:
        if operation.type is not OperationType.MUTATION:
            return None
        principal = _principal_of(operation.context)
        if principal is not None and principal.is_service:
            return None
        refusal = await self._limiter.hit(
            account_id=principal.account_id if principal else None,
            ip=_ip_of(operation.context),
            cost=self._cost(operation),
        )
        return rate_limited(refusal) if refusal is not None else None

    def _cost(self, operation: Operation) -> int:
        definition = operation.definition
        known = self._costs.get(id(definition))
        if known is not None and known[0] is definition:
            return known[1]
        cost = _mutation_count(operation)
        if len(self._costs) >= MAX_COSTS_KEPT:
            self._costs.clear()
        self._costs[id(definition)] = (definition, cost)
        return cost


MAX_COSTS_KEPT = 1024


def _mutation_count(operation: Operation) -> int:
    fragments = {
        d.name.value: d.selection_set
        for d in operation.document.definitions
        if isinstance(d, FragmentDefinitionNode)
    }
    return max(1, _count_fields(operation.definition.selection_set, fragments, set()))


def _count_fields(
    selection_set: SelectionSetNode, fragments: dict[str, SelectionSetNode], seen: set[str]
) -> int:
    count = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            count += selection.name.value != "__typename"
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name not in seen and name in fragments:
                count += _count_fields(fragments[name], fragments, seen | {name})
        else:  # an inline fragment
            count += _count_fields(selection.selection_set, fragments, seen)  # type: ignore[attr-defined]
    return count


def _principal_of(context: Context) -> Principal | None:
    try:
        return context.principal
    except ApiError:
        return None  # a bad token counts as anonymous; the field itself refuses it


def _ip_of(context: Context) -> str | None:
    return context.client_host
