"""Every query the test suite sends is answered again by a stock ``strawberry.Schema``.

The gateway's fast paths (plain leaves, query plans: graphql_schema/engine/fences.py) must never
change an answer. So while the suite runs, each query the gateway executes is executed a
second time, at once and on the same request context (same caller, same loaders, same
database state), by a stock Strawberry schema with the same types and the same rules
(validation rules, token limit, guards and masking as Strawberry extensions, from the same
policy object) and none of the fast paths. Any difference fails the test that sent it, but
for one thing stock has no counterpart for: the codes the gateway gives request errors.

Mutations are not replayed: a second run would change the database again. Their plans are
compared with stock apart: ``tests/unit/test_mutation_plans.py`` against stock Strawberry on
a schema whose resolver counts its calls (every outcome, errors included, answered alike and
the resolver called once), ``tests/api/test_mutation_plans.py`` against the app with the fast
paths off, each case on an account of its own.
Tests that measure the process itself (cache hits, garbage cycles) are marked
``no_stock_replay``: there a second execution is what they would count.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import strawberry
from graphql import GraphQLError, OperationType, get_operation_ast, parse
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType as StrawberryOperationType

from graphql_schema.engine.documents import Documents
from graphql_schema.engine.operations import GatewaySchema
from graphql_schema.errors import BAD_USER_INPUT, PARSE_FAILED, VALIDATION_FAILED

SILENCED_LOGGERS = ("creditgate", "strawberry.execution")
_replaying: ContextVar[bool] = ContextVar("replaying_on_stock", default=False)


class _DuringReplay(logging.Filter):
    """The replay's log lines would double the suite's: tests count them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _replaying.get()


@dataclasses.dataclass
class StockComparison:
    compared: int = 0
    paused: bool = False
    mismatches: list[str] = dataclasses.field(default_factory=list)
    _stock: dict[tuple[Any, ...], strawberry.Schema] = dataclasses.field(default_factory=dict)

    def stock_for(self, gateway: GatewaySchema) -> strawberry.Schema:
        policy = gateway.policy
        documents = policy.documents
        key = (
            gateway.query,
            gateway.mutation,
            gateway.subscription,
            gateway.types,
            gateway.config.disable_field_suggestions,
            policy.rules,
            policy.max_tokens,
            documents.hide_suggestions,
        )
        stock = self._stock.get(key)
        if stock is None:
            # Its own caches: the same rules, nothing worked out by the gateway reused.
            fresh = Documents(
                documents.maxsize, documents.max_bytes, hide_suggestions=documents.hide_suggestions
            )
            own_policy = dataclasses.replace(policy, documents=fresh)
            stock = strawberry.Schema(
                query=gateway.query,
                mutation=gateway.mutation,
                subscription=gateway.subscription,
                types=gateway.types,
                extensions=own_policy.subscription_extensions(),
                config=gateway.config,
            )
            assert stock.as_str() == gateway.as_str(), "the stock schema must have the same types"
            self._stock[key] = stock
        return stock

    async def replay(
        self,
        gateway: GatewaySchema,
        answer: ExecutionResult,
        query: str | None,
        variables: dict[str, Any] | None,
        context: Any,
        operation_name: str | None,
    ) -> None:
        if not query or not _is_query(query, operation_name):
            return
        token = _replaying.set(True)
        try:
            stock = await self.stock_for(gateway).execute(
                query,
                variable_values=variables,
                context_value=context,
                operation_name=operation_name,
                allowed_operation_types=(StrawberryOperationType.QUERY,),
            )
        except Exception as exc:  # the gateway answered: so must stock
            self.mismatches.append(f"{query!r} {variables!r}: stock raised {exc!r}")
            return
        finally:
            _replaying.reset(token)
        self.compared += 1
        gateway_answer, stock_answer = answers(answer), answers(stock)
        if without_request_codes(gateway_answer, stock_answer) != stock_answer:
            self.mismatches.append(
                f"{query!r} {variables!r}:\n gateway {gateway_answer}\n stock   {stock_answer}"
            )


def _is_query(query: str, operation_name: str | None) -> bool:
    try:
        definition = get_operation_ast(parse(query), operation_name)
    except GraphQLError:
        return True  # a syntax error: both must refuse it alike
    return definition is not None and definition.operation is OperationType.QUERY


def answers(result: ExecutionResult) -> tuple[Any, list[tuple[Any, ...]]]:
    """What a client reads: the data, and each error's message, path, place and extensions."""
    errors = [
        (
            error.message,
            error.path,
            [(p.line, p.column) for p in error.locations or ()],
            error.extensions,
        )
        for error in result.errors or ()
    ]
    return result.data, errors


# The gateway names its request errors (a document that does not parse or validate, variables
# that do not coerce) with a code, as Apollo Server does; stock Strawberry gives them none.
REQUEST_ERROR_CODES = frozenset({PARSE_FAILED, VALIDATION_FAILED, BAD_USER_INPUT})


def without_request_codes(
    gateway: tuple[Any, list[tuple[Any, ...]]], stock: tuple[Any, list[tuple[Any, ...]]]
) -> tuple[Any, list[tuple[Any, ...]]]:
    """The gateway's answer with the request-error codes stock has no counterpart for left
    out (only on errors without a path, where stock has no code at all)."""
    data, errors = gateway
    kept = []
    for index, (message, path, places, extensions) in enumerate(errors):
        theirs = stock[1][index][3] if index < len(stock[1]) else None
        if (
            path is None
            and extensions
            and extensions.get("code") in REQUEST_ERROR_CODES
            and not (theirs or {}).get("code")
        ):
            extensions = {k: v for k, v in extensions.items() if k != "code"} or None
            extensions = extensions if extensions is not None else theirs
        kept.append((message, path, places, extensions))
    return data, kept


@contextmanager
def comparing_with_stock() -> Iterator[StockComparison]:
    """Patch ``GatewaySchema.execute`` so every query answered is replayed on stock."""
    comparison = StockComparison()
    original = GatewaySchema.execute
    silencer = _DuringReplay()
    for name in SILENCED_LOGGERS:
        logging.getLogger(name).addFilter(silencer)

    async def execute(
        self: GatewaySchema,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Any = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        answer = await original(
            self,
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed_operation_types,
            operation_extensions,
        )
        if root_value is None and not comparison.paused and not _replaying.get():
            await comparison.replay(
                self, answer, query, variable_values, context_value, operation_name
            )
        return answer

    GatewaySchema.execute = execute  # type: ignore[method-assign]
    try:
        yield comparison
    finally:
        GatewaySchema.execute = original  # type: ignore[method-assign]
        for name in SILENCED_LOGGERS:
            logging.getLogger(name).removeFilter(silencer)
