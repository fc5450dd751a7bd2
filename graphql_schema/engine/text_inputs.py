"""No string argument may hold NUL: PostgreSQL cannot store it, so it is refused up front.

Literals are checked by a validation rule (cached with the document), variables by a guard
before execution. Lone surrogates, the other text no database stores, never get this far: the
JSON parser refuses them in the body and the GraphQL parser in literals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from graphql import GraphQLError, StringValueNode, ValidationRule

from graphql_schema.errors import ApiError

if TYPE_CHECKING:
    from graphql_schema.engine.operations import Operation

MESSAGE = "Strings may not contain the NUL character (\\u0000)."


class NoNulInStringLiterals(ValidationRule):
    def enter_string_value(self, node: StringValueNode, *_args: Any) -> None:
        if "\x00" in node.value:
            self.report_error(ApiError(MESSAGE, "BAD_USER_INPUT"))


class NoNulInVariables:
    """A guard (graphql_schema/engine/operations.py): refuses the operation before it runs."""

    async def __call__(self, operation: Operation) -> GraphQLError | None:
        return ApiError(MESSAGE, "BAD_USER_INPUT") if _holds_nul(operation.variables) else None


def _holds_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False
