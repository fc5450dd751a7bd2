"""Bounds on what one request may ask for: document shape and list sizes.

Document limits are validation rules and a parser option (graphql_schema/engine/operations.py),
so an oversized document is refused before any resolver runs. List limits are checked by
the resolvers that take lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from graphql import FragmentDefinitionNode, FragmentSpreadNode, Visitor, visit
from graphql.validation import (
    ASTValidationRule,
    NoSchemaIntrospectionCustomRule,
    ValidationContext,
    ValidationRule,
)
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
    the document cache (graphql_schema/engine/documents.py), whose key includes the rules.
    """
    rules = [
        *(
            _when_fragments_known(rule)
            for rule in QueryDepthLimiter(max_depth=limits.max_depth).validation_rules
        ),
        *MaxAliasesLimiter(max_alias_count=limits.max_aliases).validation_rules,
    ]
    if not limits.introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    return tuple(rules)


def _when_fragments_known(rule: type[ASTValidationRule]) -> type[ASTValidationRule]:
    """``rule``, skipped for a document that spreads a fragment it does not define.

    Strawberry's depth limiter looks every spread up and raised KeyError on an undefined
    one (an HTTP 500); ``KnownFragmentNamesRule`` already refuses such a document.
    """

    class IfFragmentsKnown(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            if not _spreads_undefined_fragment(context):
                rule(context)  # the depth limiter does its work, and reports, when made

    IfFragmentsKnown.__name__ = f"{rule.__name__}IfFragmentsKnown"
    return IfFragmentsKnown


class _Spreads(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_fragment_spread(self, node: FragmentSpreadNode, *_args: object) -> None:
        self.names.add(node.name.value)


def _spreads_undefined_fragment(context: ValidationContext) -> bool:
    document = context.document
    defined = {
        definition.name.value
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    spreads = _Spreads()
    visit(document, spreads)
    return not spreads.names <= defined


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
