"""The gateway's executor answers exactly as graphql-core's would, plain leaves included."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import pytest
import strawberry
from graphql import ExecutionResult, execute, parse
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from graphql_schema.engine.execution import GatewayExecutionContext, plain_leaves
from graphql_schema.schema import create_schema


@strawberry.enum
class Shade(enum.Enum):
    LIGHT = "LIGHT"
    DARK = "DARK"


class Boom(Exception):
    pass


class Row:
    """A source object; each attribute is what a plain field reads."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    @property
    def exploding(self) -> int:
        raise Boom("attribute failed")


@strawberry.type
class Item:
    count: int
    maybe_count: int | None
    shade: Shade
    maybe_shade: Shade | None
    at: datetime
    name: str
    exploding: int

    @strawberry.field
    def doubled(self) -> int:
        return self.count * 2


ROWS: list[Any] = []


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item | None]:
        return ROWS


TOY = strawberry.Schema(query=Query)
EVERYTHING = "{ items { count maybeCount shade maybeShade at name doubled } }"
WELL_FORMED = Row(
    count=3,
    maybe_count=None,
    shade=Shade.DARK,
    maybe_shade=None,
    at=datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
    name="zoë",
)
ODD_ROWS = {
    "null in a non-null field": Row(**{**WELL_FORMED.__dict__, "count": None}),
    "a value the scalar refuses": Row(**{**WELL_FORMED.__dict__, "count": "three"}),
    "a value the enum refuses": Row(**{**WELL_FORMED.__dict__, "shade": "PURPLE"}),
    "a missing attribute": Row(**{k: v for k, v in WELL_FORMED.__dict__.items() if k != "name"}),
}


def run(schema: strawberry.Schema, document: str, executor: type) -> ExecutionResult:
    result = execute(schema._schema, parse(document), executor_class=executor, context_value={})
    assert isinstance(result, ExecutionResult)
    return result


def answers(schema: strawberry.Schema, document: str) -> tuple[Any, Any]:
    gateway = run(schema, document, GatewayExecutionContext.for_schema(schema._schema))
    stock = run(schema, document, StrawberryGraphQLCoreExecutionContext)
    return gateway, stock


def comparable(result: ExecutionResult) -> tuple[Any, Any]:
    errors = [(e.message, e.path, e.locations) for e in result.errors or []]
    return result.data, errors


def test_plain_leaves_are_fields_without_resolvers_of_scalar_or_enum_type() -> None:
    found = plain_leaves(TOY._schema)

    assert set(found) == {
        ("Item", name) for name in ("count", "maybeCount", "shade", "maybeShade", "at", "name")
    } | {("Item", "exploding")}
    assert ("Item", "doubled") not in found  # it has a resolver
    assert ("Query", "items") not in found  # a list of objects


def test_the_gateway_schema_reads_balances_and_dates_as_plain_leaves() -> None:
    found = plain_leaves(create_schema()._schema)

    for field in ("creditsTotal", "subscriptionBalance", "packBalance", "nextRenewalAt"):
        assert ("Account", field) in found
    assert ("Subscription", "plan") in found
    assert ("Account", "generations") not in found  # a resolver with arguments
    assert ("Account", "subscription") not in found  # an object


def test_a_well_formed_row_answers_the_same_through_both_executors() -> None:
    ROWS[:] = [WELL_FORMED, None]

    gateway, stock = answers(TOY, EVERYTHING)

    assert gateway.errors is None
    assert comparable(gateway) == comparable(stock)
    assert gateway.data == {
        "items": [
            {
                "count": 3,
                "maybeCount": None,
                "shade": "DARK",
                "maybeShade": None,
                "at": "2026-11-30T12:00:00+00:00",
                "name": "zoë",
                "doubled": 6,
            },
            None,
        ]
    }


@pytest.mark.parametrize("case", sorted(ODD_ROWS))
def test_a_field_error_is_raised_located_and_nulled_as_graphql_core_does(case: str) -> None:
    ROWS[:] = [WELL_FORMED, ODD_ROWS[case]]

    gateway, stock = answers(TOY, EVERYTHING)

    assert stock.errors, "the row is meant to be refused"
    assert comparable(gateway) == comparable(stock)


def test_an_exception_while_reading_an_attribute_is_a_located_error_as_before() -> None:
    ROWS[:] = [Row(**WELL_FORMED.__dict__)]

    gateway, stock = answers(TOY, "{ items { count exploding } }")

    assert [e.message for e in gateway.errors or []] == ["attribute failed"]
    assert comparable(gateway) == comparable(stock)


def test_the_shortcut_answers_plain_leaves_without_resolve_info(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Otherwise the comparisons above would hold vacuously: the shortcut must be taken.
    ROWS[:] = [WELL_FORMED]
    built: list[str] = []
    original = StrawberryGraphQLCoreExecutionContext.build_resolve_info

    def counting(self: Any, field_def: Any, nodes: Any, parent: Any, path: Any) -> Any:
        built.append(f"{parent.name}.{nodes[0].name.value}")
        return original(self, field_def, nodes, parent, path)

    monkeypatch.setattr(StrawberryGraphQLCoreExecutionContext, "build_resolve_info", counting)

    run(TOY, EVERYTHING, GatewayExecutionContext.for_schema(TOY._schema))
    assert built == ["Query.items", "Item.doubled"]
    built.clear()
    run(TOY, EVERYTHING, StrawberryGraphQLCoreExecutionContext)
    assert len(built) == 8
