"""A plan calls resolvers directly only where Strawberry's wrapper would change nothing,
and with the very arguments the wrapper would have converted."""

from __future__ import annotations

import enum
from typing import Any

import pytest
import strawberry
from strawberry.permission import BasePermission

from graphql_schema.engine.documents import Documents
from graphql_schema.engine.operations import GatewaySchema, OperationPolicy
from graphql_schema.engine.resolvers import DirectResolver, DirectResolvers
from tests.stock_comparison import StockComparison, answers


@strawberry.enum
class Tone(enum.Enum):
    LOW = "LOW"
    HIGH = "HIGH"


@strawberry.input
class Inner:
    tones: list[Tone]
    label: str | None = "none"


@strawberry.input
class Outer:
    name: str
    count: int = 3
    inner: Inner | None = None
    inners: list[Inner] | None = None
    tags: list[str | None] | None = None
    maybe: str | None = strawberry.UNSET


class Never(BasePermission):
    message = "never"

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        return False


def _seen(value: Any) -> str:
    """The Python value as the resolver received it, types included."""
    if isinstance(value, list):
        return "[" + ", ".join(_seen(v) for v in value) + "]"
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if hasattr(value, "__dataclass_fields__"):
        inner = ", ".join(f"{k}={_seen(getattr(value, k))}" for k in value.__dataclass_fields__)
        return f"{type(value).__name__}({inner})"
    return repr(value)


@strawberry.type
class Query:
    @strawberry.field
    def echo(
        self, outer: Outer, tone: Tone | None = None, ids: list[strawberry.ID] | None = None
    ) -> str:
        return _seen([outer, tone, ids])

    @strawberry.field
    async def later(self, info: strawberry.Info, n: int) -> str:
        return f"{info.field_name} {n}"

    @strawberry.field(permission_classes=[Never])
    def secret(self) -> str:
        return "leaked"


def _gateway() -> GatewaySchema:
    return GatewaySchema(Query, policy=OperationPolicy(Documents(maxsize=64)))


@pytest.mark.parametrize(
    ("document", "variables"),
    [
        ('{ echo(outer: {name: "a"}) }', None),
        (
            '{ echo(outer: {name: "a", count: 1, inner: {tones: [LOW, HIGH]}, '
            'inners: [{tones: [], label: null}, {tones: [HIGH], label: "x"}], '
            'tags: ["t", null], maybe: null}, tone: HIGH, ids: ["1", "2"]) }',
            None,
        ),
        (
            "query($o: Outer!, $t: Tone) { echo(outer: $o, tone: $t) }",
            {"o": {"name": "v", "inner": {"tones": ["LOW"]}, "maybe": "m"}, "t": None},
        ),
        ("{ later(n: 4) a: later(n: 5) }", None),
        ("{ secret }", None),
        ('{ echo(outer: {name: "a"}) secret }', None),
    ],
)
async def test_planned_resolvers_see_the_arguments_stock_strawberry_gives(
    document: str, variables: Any
) -> None:
    gateway = _gateway()
    stock = StockComparison().stock_for(gateway)

    fast = await gateway.execute(document, variable_values=variables)
    by_stock = await stock.execute(document, variable_values=variables)

    assert answers(fast) == answers(by_stock)


def test_only_fields_without_permissions_or_extensions_are_called_directly() -> None:
    gateway = _gateway()
    resolvers = DirectResolvers(gateway.schema_converter)
    fields = gateway._schema.query_type.fields  # type: ignore[union-attr]

    assert isinstance(resolvers.of(fields["echo"]), DirectResolver)
    assert isinstance(resolvers.of(fields["later"]), DirectResolver)
    assert resolvers.of(fields["secret"]) is fields["secret"].resolve  # Strawberry's wrapper
