"""Each distinct document parsed and validated once per process, keyed by its text.

Strawberry's ``ValidationCache`` keys its LRU on the parsed document, and a graphql-core
syntax tree hashes by walking every node, on every request. Here the key is the query text
(plus the parse options and the validation rules in force), one string hash; a validation
result is reused only for the very document object it was computed on, so a document
re-parsed after eviction is validated again.

Every cache is bounded twice: by entries, and by an estimate of the bytes it holds, so a
client sending large distinct documents cannot grow the process by the entry count times
the largest document (issue 12: 256 hostile 100 KB documents took a process from 103 MB to
346 MB). The estimate is the document's text length times ``BYTES_PER_CHARACTER``,
measured on the parsed tree and its validation errors of hostile documents (2 to 13 times
the text; 16 leaves a margin).

In production (``hide_suggestions``) validation names nothing the client did not write:
graphql-core's "Did you mean" hints for fields, arguments, enum values, input fields and
types are off, and the one rule that ignores the switch has its hint cut here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from graphql import DocumentNode, GraphQLError, GraphQLSchema, parse, validate
from graphql.validation import ASTValidationRule
from strawberry.extensions import SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

Rules = tuple[type[ASTValidationRule], ...]
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

BYTES_PER_CHARACTER = 16
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
SUGGESTION = " Did you mean"


def estimated_bytes(text: str) -> int:
    """What caching the work on a document of this text costs, roughly (see above)."""
    return len(text) * BYTES_PER_CHARACTER


def _text_of(document: DocumentNode) -> str:
    return document.loc.source.body if document.loc is not None else ""


class BoundedLru(Generic[K, V]):
    """An LRU holding at most ``maxsize`` entries and about ``max_bytes`` of them; an entry
    larger than the whole byte bound is not kept at all."""

    def __init__(self, maxsize: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        self._entries.move_to_end(key)
        return hit[0]

    def put(self, key: K, value: V, size: int) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        if self.maxsize <= 0 or size > self.max_bytes:
            return
        self._entries[key] = (value, size)
        self.bytes += size
        while len(self._entries) > self.maxsize or self.bytes > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.bytes -= dropped


class PerDocument(Generic[K, V]):
    """What was worked out for a document, in a bounded LRU keyed by its text (and whatever
    else decides the outcome); an entry is reused only for the very document object it was
    made from, so a document re-parsed after eviction is worked out again."""

    def __init__(self, maxsize: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.maxsize = maxsize
        self._entries: BoundedLru[K, tuple[DocumentNode, V]] = BoundedLru(maxsize, max_bytes)

    @property
    def bytes(self) -> int:
        return self._entries.bytes

    def get(self, key: K, document: DocumentNode, make: Callable[[], V]) -> V:
        hit = self._entries.get(key)
        if hit is not None and hit[0] is document:
            return hit[1]
        value = make()
        self._entries.put(key, (document, value), estimated_bytes(_text_of(document)))
        return value


class Documents:
    """The bounded caches, shared by every request on one schema."""

    def __init__(
        self, maxsize: int, max_bytes: int = DEFAULT_MAX_BYTES, *, hide_suggestions: bool = False
    ) -> None:
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.hide_suggestions = hide_suggestions
        self._parsed: BoundedLru[tuple[str, tuple[tuple[str, Any], ...]], DocumentNode]
        self._parsed = BoundedLru(maxsize, max_bytes)
        self._validated: PerDocument[tuple[str, Rules], list[GraphQLError]]
        self._validated = PerDocument(maxsize, max_bytes)

    @property
    def parsed_entries(self) -> int:
        return len(self._parsed)

    @property
    def bytes(self) -> int:
        """The estimated bytes held by the parse and validation caches."""
        return self._parsed.bytes + self._validated.bytes

    def parse(self, query: str, options: tuple[tuple[str, Any], ...]) -> DocumentNode:
        """``query`` parsed, from the cache when it is there; syntax errors are raised, not
        kept."""
        key = (query, options)
        document = self._parsed.get(key)
        if document is None:
            document = parse(query, **dict(options))
            self._parsed.put(key, document, estimated_bytes(query))
        return document

    def validate(
        self, schema: GraphQLSchema, query: str, document: DocumentNode, rules: Rules
    ) -> list[GraphQLError]:
        return self._validated.get(
            (query, rules), document, lambda: self._validate(schema, document, rules)
        )

    def _validate(
        self, schema: GraphQLSchema, document: DocumentNode, rules: Rules
    ) -> list[GraphQLError]:
        # Strawberry's own rules, as its ``validate_document`` adds them.
        every_rule = (*rules, MaybeNullValidationRule, OneOfInputValidationRule)
        errors = validate(schema, document, every_rule, hide_suggestions=self.hide_suggestions)
        if self.hide_suggestions:
            without_suggestions(errors)
        return errors


def without_suggestions(errors: Iterable[GraphQLError]) -> None:
    """Cut any "Did you mean ..." left in ``errors`` (graphql-core's ScalarLeafsRule ignores
    ``hide_suggestions``); the messages are changed in place, as Strawberry does."""
    for error in errors:
        if SUGGESTION in error.message:
            error.message = error.message.partition(SUGGESTION)[0]


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
