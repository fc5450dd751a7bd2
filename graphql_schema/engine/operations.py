"""Queries and mutations from document to masked result, in one pass.

Strawberry's ``Schema.execute`` runs each phase through its extension runner: per request
it wraps every hook of every extension in a context manager and an exit stack. Served, that
machinery cost the gateway more CPU than graphql-core's execution of the editor read
(bench/README.md). So the gateway's per-operation policy (cached documents with their
limits, guards on the input, the mutation rate limit, metrics and error masking) runs here
as plain calls, in this order:

    parse (cached; token limit) -> operation type -> validate (cached; depth, aliases, NUL,
    introspection) -> guards -> execute (a plan, else graphql-core) -> log errors -> observe
    -> mask

Subscriptions still take Strawberry's path; ``subscription_extensions`` builds their
extensions from the same policy objects, so every rule stays in one place.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import strawberry
from graphql import DocumentNode, GraphQLError, OperationDefinitionNode, get_operation_ast
from graphql import execute as graphql_execute
from graphql.validation import ASTValidationRule, specified_rules
from strawberry.exceptions import MissingQueryError
from strawberry.execution import optimized_is_awaitable
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.utils.await_maybe import await_maybe

from graphql_schema.engine.documents import DocumentCache, Documents, without_suggestions
from graphql_schema.engine.execution import GatewayExecutionContext
from graphql_schema.engine.masking import MaskUnexpectedErrors, mask_unexpected
from graphql_schema.engine.observability import OperationObserver, noting_results
from graphql_schema.engine.plans import QueryPlans, Replay
from graphql_schema.engine.resolvers import DirectResolvers
from graphql_schema.errors import BAD_USER_INPUT, PARSE_FAILED, VALIDATION_FAILED, coded

# What ``execute`` runs: a subscription needs ``subscribe`` (the websocket). Over HTTP,
# graphql-core would resolve its field once, as a query, and fail unexpectedly.
EXECUTABLE = frozenset({OperationType.QUERY, OperationType.MUTATION})


@dataclass(frozen=True, slots=True)
class Operation:
    """What a guard sees: the validated operation and the request around it."""

    document: DocumentNode
    definition: OperationDefinitionNode
    variables: dict[str, Any] | None
    context: Any

    @property
    def type(self) -> OperationType:
        return OperationType(self.definition.operation.value)


class Guard(Protocol):
    """A check between validation and execution; an error refuses the whole operation."""

    async def __call__(self, operation: Operation) -> GraphQLError | None: ...


@dataclass(frozen=True)
class OperationPolicy:
    """What every operation passes through; built once per schema, shared by requests."""

    documents: Documents
    rules: tuple[type[ASTValidationRule], ...] = ()  # beyond GraphQL's own
    max_tokens: int | None = None
    guards: Sequence[Guard] = ()
    observer: OperationObserver | None = None

    @cached_property
    def parse_options(self) -> tuple[tuple[str, Any], ...]:
        return () if self.max_tokens is None else (("max_tokens", self.max_tokens),)

    @cached_property
    def validation_rules(self) -> tuple[type[ASTValidationRule], ...]:
        """GraphQL's own rules and the policy's: one tuple, so requests build none."""
        return (*specified_rules, *self.rules)

    def subscription_extensions(self) -> list[Callable[[], SchemaExtension]]:
        """The same policy as Strawberry extensions, for the operations it runs itself."""
        rules, max_tokens, documents = list(self.rules), self.max_tokens, self.documents
        extensions: list[Callable[[], SchemaExtension]] = [MaskUnexpectedErrors]
        if rules:
            extensions.append(lambda: AddValidationRules(rules))
        if max_tokens is not None:
            extensions.append(lambda: MaxTokensLimiter(max_token_count=max_tokens))
        if self.guards:
            guards = self.guards
            extensions.append(lambda: GuardsExtension(guards))
        extensions.append(lambda: DocumentCache(documents))
        return extensions


class GuardsExtension(SchemaExtension):
    """The policy's guards where Strawberry runs the operation (subscriptions)."""

    def __init__(self, guards: Sequence[Guard]) -> None:
        self._guards = guards

    async def on_execute(self) -> AsyncIterator[None]:
        execution = self.execution_context
        document = execution.graphql_document
        definition = (
            get_operation_ast(document, execution.operation_name) if document is not None else None
        )
        if document is not None and definition is not None:
            operation = Operation(document, definition, execution.variables, execution.context)
            error = await first_refusal(self._guards, operation)
            if error is not None:
                # Strawberry's subscribe ignores a result set here, but answers an exception
                # raised from this hook with it as the error, before subscribing.
                raise error
        yield


async def first_refusal(guards: Iterable[Guard], operation: Operation) -> GraphQLError | None:
    for guard in guards:
        error = await guard(operation)
        if error is not None:
            return error
    return None


class GatewaySchema(strawberry.Schema):
    """Strawberry's schema whose ``execute`` runs the policy without the extension runner."""

    def __init__(
        self,
        query: type,
        *,
        policy: OperationPolicy,
        fast_paths: bool = True,
        types: Sequence[type] = (),
        **kwargs: Any,
    ) -> None:
        """``fast_paths`` False (graphql_schema/engine/fences.py): no plain leaves, no plans."""
        super().__init__(query, types=types, extensions=policy.subscription_extensions(), **kwargs)
        self.types = tuple(types)  # kept, so a stock schema can be built alike (tests)
        # Bound after the build: the executor's shortcuts are read off the finished schema.
        self.execution_context_class = (
            GatewayExecutionContext.for_schema(self._schema)
            if fast_paths
            else StrawberryGraphQLCoreExecutionContext
        )
        self.policy = policy
        self.plans = (
            QueryPlans(
                policy.documents.maxsize,
                policy.documents.max_bytes,
                DirectResolvers(self.schema_converter),
            )
            if fast_paths
            else None
        )

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        if not query:
            raise MissingQueryError
        policy = self.policy
        started = time.perf_counter()
        noted: list[str] = []
        noting = noting_results.set(noted)  # what resolvers return, for the observer
        try:
            result, definition = await self._run(
                query,
                variable_values,
                context_value,
                root_value,
                operation_name,
                EXECUTABLE if allowed_operation_types is None else allowed_operation_types,
                operation_extensions,
            )
        finally:
            noting_results.reset(noting)
        if result.errors:
            # Logged before masking, as Strawberry does (and without field suggestions).
            self._process_errors(result.errors)
        if policy.observer is not None:
            policy.observer.observe(
                definition, operation_name, result.errors, noted, started, context_value
            )
        if result.errors:
            result.errors = mask_unexpected(result.errors, context_value)
        return result

    async def _run(
        self,
        query: str,
        variables: dict[str, Any] | None,
        context: Any,
        root_value: Any,
        operation_name: str | None,
        allowed: Iterable[OperationType],
        operation_extensions: dict[str, Any] | None,
    ) -> tuple[ExecutionResult, OperationDefinitionNode | None]:
        policy = self.policy
        try:
            document = policy.documents.parse(query, policy.parse_options)
        except GraphQLError as error:
            return ExecutionResult(data=None, errors=coded([error], PARSE_FAILED)), None
        definition = get_operation_ast(document, operation_name)
        if definition is None:
            raise CannotGetOperationTypeError(operation_name)
        operation = Operation(document, definition, variables, context)
        kind = operation.type
        if kind not in allowed or kind not in EXECUTABLE:
            raise InvalidOperationTypeError(kind)
        errors = policy.documents.validate(self._schema, query, document, policy.validation_rules)
        if errors:
            return ExecutionResult(data=None, errors=coded(errors, VALIDATION_FAILED)), definition
        if policy.guards:
            refusal = await first_refusal(policy.guards, operation)
            if refusal is not None:
                return ExecutionResult(data=None, errors=[refusal]), definition
        replay: tuple[Replay, ...] | None = None
        if self.plans is not None:
            plan = self.plans.get(self._schema, query, operation_name, document, definition)
            if plan is not None:
                data = await plan.execute(
                    self._schema,
                    root_value,
                    context,
                    variables,
                    operation_extensions,
                    self.plans.resolvers,
                )
                if isinstance(data, dict):
                    return ExecutionResult(data=data, errors=None), definition
                if data is not None:  # a mutation already resolved: graphql-core completes it
                    replay = (data,)
        outcome = await await_maybe(
            graphql_execute(
                self._schema,
                document,
                root_value=root_value,
                variable_values=variables,
                operation_name=operation_name,
                context_value=context,
                # Strawberry's own check, which it hands graphql-core too; typed as a bool.
                is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]
                executor_class=self.execution_context_class,
                operation_extensions=operation_extensions,
                # Variable coercion errors would suggest enum values and input fields.
                hide_suggestions=policy.documents.hide_suggestions,
                middleware=replay,
            )
        )
        if outcome.errors and policy.documents.hide_suggestions:
            without_suggestions(outcome.errors)
        if outcome.data is None and outcome.errors:
            # No data and no field's error: the variables did not coerce, nothing ran.
            coded([e for e in outcome.errors if e.path is None], BAD_USER_INPUT)
        return ExecutionResult(data=outcome.data, errors=outcome.errors), definition
