from collections.abc import Callable

from graphql import GraphQLError, parse
from graphql.validation import NoUnusedFragmentsRule, specified_rules

from graphql_schema.engine.documents import Documents, PerDocument
from graphql_schema.schema import create_schema

SCHEMA = create_schema()._schema
RULES = tuple(specified_rules)
GOOD = "query { tariffs { tool credits } }"
BAD = "query { tariffs { nope } }"


def _validated(documents: Documents, query: str, rules: tuple = RULES) -> list[GraphQLError]:
    document = documents.parse(query, ())
    return documents.validate(SCHEMA, query, document, rules)


def test_one_query_text_is_parsed_once_and_validated_once() -> None:
    documents = Documents(maxsize=8)

    first = documents.parse(GOOD, ())
    assert documents.parse(GOOD, ()) is first
    assert _validated(documents, GOOD) == []
    assert _validated(documents, GOOD) == []
    assert documents.parsed_entries == 1


def test_an_invalid_document_is_refused_every_time() -> None:
    documents = Documents(maxsize=8)

    for _ in range(2):
        errors = _validated(documents, BAD)
        assert [e.message for e in errors] == ["Cannot query field 'nope' on type 'Tariff'."]


def test_other_validation_rules_validate_again() -> None:
    # given a document validated under the standard rules
    documents = Documents(maxsize=8)
    unused_fragment = GOOD + " fragment F on Tariff { tool }"
    assert _validated(documents, unused_fragment, (NoUnusedFragmentsRule,)) != []

    # when the same text is validated under other rules
    # then it is not the cached result that answers
    assert _validated(documents, unused_fragment, ()) == []


def test_the_caches_are_bounded_and_a_reparsed_document_is_validated_again() -> None:
    documents = Documents(maxsize=2)
    evicted = documents.parse(BAD, ())
    assert documents.validate(SCHEMA, BAD, evicted, RULES) != []

    for number in range(3):
        _validated(documents, f"query Q{number} {{ plans {{ plan }} }}")

    assert documents.parsed_entries == 2
    reparsed = documents.parse(BAD, ())
    assert reparsed is not evicted
    assert documents.validate(SCHEMA, BAD, reparsed, RULES) != []


def test_a_per_document_entry_serves_only_its_own_document_and_the_oldest_goes_first() -> None:
    entries: PerDocument[str, int] = PerDocument(maxsize=2)
    made: list[str] = []

    def make(name: str) -> Callable[[], int]:
        def made_now() -> int:
            made.append(name)
            return len(made)

        return made_now

    first, again, other = parse("{ a }"), parse("{ a }"), parse("{ b }")
    assert entries.get("a", first, make("a")) == 1
    assert entries.get("a", first, make("a")) == 1  # the same document object: kept
    assert entries.get("a", again, make("a again")) == 2  # re-parsed: worked out again
    entries.get("b", other, make("b"))
    entries.get("c", other, make("c"))  # over the bound: "a", the oldest, goes
    assert entries.get("a", again, make("a evicted")) == 5
    assert made == ["a", "a again", "b", "c", "a evicted"]
