"""Mutation plans run the resolver once and answer exactly what stock Strawberry answers.

A small schema whose mutation counts its calls: every outcome a plan cannot complete
itself (the resolver raising, a member's field breaking its type) is completed by
graphql-core from the outcome already in hand, never by calling the resolver again.
"""

from __future__ import annotations

from typing import Annotated, Any

import pytest
import strawberry
from graphql import GraphQLError

from graphql_schema.engine.documents import Documents
from graphql_schema.engine.operations import GatewaySchema, OperationPolicy
from graphql_schema.engine.plans import MutationPlan, Replay
from tests.stock_comparison import StockComparison, answers, without_request_codes

CALLS: list[str] = []


@strawberry.type
class Done:
    count: int
    label: str


@strawberry.type
class Refusal:
    message: str


@strawberry.type
class Holder:
    done: Done
    maybe: Done | None


Outcome = Annotated[Done | Refusal, strawberry.union("Outcome")]


class Broken:
    """Passes for a ``Done`` by its definition, but its ``label`` is None (non-null)."""

    __strawberry_definition__ = Done.__strawberry_definition__  # type: ignore[attr-defined]

    def __init__(self, count: int) -> None:
        self.count = count
        self.label = None


@strawberry.type
class Query:
    ping: str = "pong"


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def act(self, how: str, count: int = 1) -> Outcome:
        CALLS.append(how)
        if how == "raise":
            raise ValueError("resolver failed")
        if how == "refuse":
            raise GraphQLError("refused", extensions={"code": "FORBIDDEN"})
        if how == "member":
            return Refusal(message="no")
        if how == "broken":
            return Broken(count)  # type: ignore[return-value]
        if how == "foreign":
            return "not a member"  # type: ignore[return-value]
        return Done(count=count, label=how)

    @strawberry.mutation
    def hold(self, how: str) -> Holder:
        CALLS.append(how)
        broken = Broken(1)
        done = Done(count=2, label="x")
        return Holder(done=done, maybe=broken if how == "maybe" else done)  # type: ignore[arg-type]

    @strawberry.mutation
    def plain(self) -> int | None:
        CALLS.append("plain")
        return 7


def _gateway() -> GatewaySchema:
    return GatewaySchema(Query, mutation=Mutation, policy=OperationPolicy(Documents(maxsize=64)))


SELECTION = "__typename ... on Done { count label } ... on Refusal { message }"
CASES = [
    ("a member", f'mutation {{ act(how: "ok", count: 3) {{ {SELECTION} }} }}', None, dict),
    ("an aliased member", f'mutation {{ a: act(how: "member") {{ {SELECTION} }} }}', None, dict),
    (
        "arguments from variables",
        f'mutation($n: Int!) {{ act(how: "ok", count: $n) {{ {SELECTION} }} }}',
        {"n": 5},
        dict,
    ),
    ("a resolver that raises", f'mutation {{ act(how: "raise") {{ {SELECTION} }} }}', None, Replay),
    ("a coded error", f'mutation {{ act(how: "refuse") {{ {SELECTION} }} }}', None, Replay),
    (
        "a member that breaks its type",
        f'mutation {{ act(how: "broken") {{ {SELECTION} }} }}',
        None,
        Replay,
    ),
    ("a value of no member", f'mutation {{ act(how: "foreign") {{ {SELECTION} }} }}', None, Replay),
    (
        "a nullable field that breaks",
        'mutation { hold(how: "maybe") { done { count } maybe { count label } } }',
        None,
        Replay,
    ),
    ("a scalar result", "mutation { plain }", None, dict),
    (
        "a variable of the wrong type",
        f'mutation($n: Int!) {{ act(how: "ok", count: $n) {{ {SELECTION} }} }}',
        {"n": "five"},
        type(None),
    ),
]


@pytest.mark.parametrize(
    ("name", "document", "variables", "planned"), CASES, ids=[case[0] for case in CASES]
)
async def test_a_planned_mutation_runs_once_and_answers_as_stock(
    monkeypatch: pytest.MonkeyPatch, name: str, document: str, variables: Any, planned: type
) -> None:
    # given the gateway's schema and stock Strawberry's, with the same rules
    gateway = _gateway()
    stock = StockComparison().stock_for(gateway)
    outcomes: list[object] = []
    execute = MutationPlan.execute

    async def noting(plan: MutationPlan, *args: Any) -> Any:
        outcomes.append(await execute(plan, *args))
        return outcomes[-1]

    monkeypatch.setattr(MutationPlan, "execute", noting)

    # when each answers the mutation once
    CALLS.clear()
    fast = await gateway.execute(document, variable_values=variables)
    fast_calls, CALLS[:] = list(CALLS), []
    by_stock = await stock.execute(document, variable_values=variables)

    # then the same answer, the resolver called as often (once, or never), and the plan
    # answered, handed graphql-core the outcome, or stepped aside before anything ran
    assert without_request_codes(answers(fast), answers(by_stock)) == answers(by_stock)
    assert fast_calls == CALLS and len(CALLS) == (0 if planned is type(None) else 1)
    assert len(outcomes) == 1 and isinstance(outcomes[0], planned), outcomes


async def test_with_the_fast_paths_off_no_mutation_is_planned() -> None:
    gateway = GatewaySchema(
        Query, mutation=Mutation, policy=OperationPolicy(Documents(maxsize=8)), fast_paths=False
    )
    CALLS.clear()
    result = await gateway.execute('mutation { act(how: "ok") { __typename } }')
    assert result.data == {"act": {"__typename": "Done"}} and CALLS == ["ok"]
    assert gateway.plans is None


@pytest.mark.parametrize(
    "document",
    [
        'mutation { act(how: "ok") { __typename } plain }',  # two root fields
        'mutation { act(how: "ok") @include(if: true) { __typename } }',
        "mutation { __typename }",
    ],
)
async def test_mutations_a_plan_does_not_cover_run_through_graphql_core(document: str) -> None:
    from graphql import get_operation_ast, parse

    from graphql_schema.engine.plans import plan_mutation

    gateway = _gateway()
    node = parse(document)
    assert plan_mutation(gateway._schema, node, get_operation_ast(node)) is None  # type: ignore[arg-type]
    stock = StockComparison().stock_for(gateway)
    CALLS.clear()
    fast = await gateway.execute(document)
    fast_calls, CALLS[:] = list(CALLS), []
    assert answers(fast) == answers(await stock.execute(document)) and fast_calls == CALLS
