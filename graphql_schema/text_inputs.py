"""No string argument may hold NUL: PostgreSQL cannot store it, so it is refused up front.

Literals are checked by a validation rule (cached with the document), variables before
execution. Lone surrogates, the other text no database stores, never get this far: the
JSON parser refuses them in the body and the GraphQL parser in literals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import StringValueNode, ValidationRule
from strawberry.extensions import AddValidationRules, SchemaExtension

from graphql_schema.errors import ApiError

MESSAGE = "Strings may not contain the NUL character (\\u0000)."


class NoNulInStringLiterals(ValidationRule):
    def enter_string_value(self, node: StringValueNode, *_args: Any) -> None:
        if "\x00" in node.value:
            self.report_error(ApiError(MESSAGE, "BAD_USER_INPUT"))


class NoNulInVariables(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        execution = self.execution_context
        if _holds_nul(execution.variables):
            # A result set here is returned instead of executing the operation.
            execution.result = GraphQLExecutionResult(
                data=None, errors=[ApiError(MESSAGE, "BAD_USER_INPUT")]
            )
        yield


def _holds_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


def text_input_extensions() -> list[Callable[[], SchemaExtension]]:
    return [lambda: AddValidationRules([NoNulInStringLiterals]), NoNulInVariables]
