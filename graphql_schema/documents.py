"""Each distinct document parsed and validated once per process, keyed by its text.

Strawberry's ``ValidationCache`` keys its LRU on the parsed document, and a graphql-core
syntax tree hashes by walking every node, on every request. Here the key is the query text
(plus the parse options and the validation rules in force), one string hash; a validation
result is reused only for the very document object it was computed on, so a document
re-parsed after eviction is validated again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from functools import lru_cache
from typing import Any, Generic, TypeVar

from graphql import DocumentNode, GraphQLError, GraphQLSchema, parse
from graphql.validation import ASTValidationRule
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

Rules = tuple[type[ASTValidationRule], ...]
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class PerDocument(Generic[K, V]):
    """What was worked out for a document, in a bounded LRU keyed by its text (and whatever
    else decides the outcome); an entry is reused only for the very document object it was
    made from, so a document re-parsed after eviction is worked out again."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[K, tuple[DocumentNode, V]] = OrderedDict()

    def get(self, key: K, document: DocumentNode, make: Callable[[], V]) -> V:
        hit = self._entries.get(key)
        if hit is not None and hit[0] is document:
            self._entries.move_to_end(key)
            return hit[1]
        value = make()
        self._entries[key] = (document, value)
        self._entries.move_to_end(key)
        if len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)
        return value


class Documents:
    """The bounded caches, shared by every request on one schema."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.parse = lru_cache(maxsize=maxsize)(_parse)
        self._validated: PerDocument[tuple[str, Rules], list[GraphQLError]]
        self._validated = PerDocument(maxsize)

    def validate(
        self, schema: GraphQLSchema, query: str, document: DocumentNode, rules: Rules
    ) -> list[GraphQLError]:
        return self._validated.get(
            (query, rules), document, lambda: validate_document(schema, document, rules)
        )


def _parse(query: str, options: tuple[tuple[str, Any], ...]) -> DocumentNode:
    return parse(query, **dict(options))


class DocumentCache(SchemaExtension):
    def __init__(self, documents: Documents) -> None:
        super().__init__()
        self._documents = documents

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query:
            options = tuple(sorted(context.parse_options.items()))
            context.graphql_document = self._documents.parse(context.query, options)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.query and context.graphql_document is not None:
            context.pre_execution_errors = self._documents.validate(
                context.schema._schema,
                context.query,
                context.graphql_document,
                tuple(context.validation_rules),
            )
        yield
