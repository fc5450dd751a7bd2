"""Mutations count against the caller's budgets before they run; over budget, nothing runs.

Each mutation field in a document counts once, so aliases can't multiply one call.
Service tokens are trusted backends and are not counted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    SelectionSetNode,
    get_operation_ast,
)
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from app.auth import Principal
from app.security.rate_limits import RateLimiter, Refusal
from graphql_schema.context import Context
from graphql_schema.errors import ApiError


def rate_limited(refusal: Refusal) -> ApiError:
    return ApiError(
        f"Too many mutations for this {refusal.scope}; retry in {refusal.retry_after} s.",
        "RATE_LIMITED",
        retryAfter=refusal.retry_after,
        scope=refusal.scope,
    )


class MutationRateLimit(SchemaExtension):
    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    async def on_execute(self) -> AsyncIterator[None]:  # type: ignore[override]
        refusal = await self._count()
        if refusal is not None:
            # A result set before execution is returned instead of running the operation.
            self.execution_context.result = GraphQLExecutionResult(
                data=None, errors=[rate_limited(refusal)]
            )
        yield

    async def _count(self) -> Refusal | None:
        execution = self.execution_context
        if execution.operation_type is not OperationType.MUTATION:
            return None
        principal = _principal_of(execution.context)
        if principal is not None and principal.is_service:
            return None
        return await self._limiter.hit(
            account_id=principal.account_id if principal else None,
            ip=_ip_of(execution.context),
            cost=self._mutation_count(),
        )

    def _mutation_count(self) -> int:
        document = self.execution_context.graphql_document
        assert document is not None
        fragments = {
            d.name.value: d.selection_set
            for d in document.definitions
            if isinstance(d, FragmentDefinitionNode)
        }
        operation = get_operation_ast(document, self.execution_context.operation_name)
        assert operation is not None  # validation found it before execution
        return max(1, _count_fields(operation.selection_set, fragments, set()))


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
    request = context.request
    return request.client.host if request is not None and request.client else None
