"""Bounds on what one request may ask for: document shape and list sizes.

Document limits are validation rules and a parser option (graphql_schema/operations.py),
so an oversized document is refused before any resolver runs. List limits are checked by
the resolvers that take lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter

from graphql_schema.errors import bad_input

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    max_depth: int = 10
    max_aliases: int = 15
    max_tokens: int = 2000
    introspection: bool = True


@dataclass(frozen=True, slots=True)
class ListLimits:
    max_ids: int = 100
    max_page_size: int = 100


def document_rules(limits: DocumentLimits) -> tuple[type[ASTValidationRule], ...]:
    """Validation rules enforcing ``limits`` (the token limit is a parser option).

    The rule classes are made once here and shared: graphql-core instantiates a rule per
    validation, so they hold no request state, and a new class per request would also miss
    the document cache (graphql_schema/documents.py), whose key includes the rules.
    """
    rules = [
        *QueryDepthLimiter(max_depth=limits.max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=limits.max_aliases).validation_rules,
    ]
    if not limits.introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    return tuple(rules)


def checked_list(values: Sequence[T], limit: int, field: str) -> Sequence[T]:
    """``values`` if there are at most ``limit`` of them, else a BAD_USER_INPUT error."""
    if len(values) > limit:
        raise bad_input(f"{field} takes at most {limit} items.", field)
    return values


def page_size(first: int | None, limits: ListLimits, field: str = "first") -> int:
    """How many items a connection returns: ``first``, or the maximum page when omitted."""
    if first is None:
        return limits.max_page_size
    # An empty page tells nothing a client could not know: the smallest page is one item.
    if not 1 <= first <= limits.max_page_size:
        raise bad_input(f"{field} must be between 1 and {limits.max_page_size}.", field)
    return first
