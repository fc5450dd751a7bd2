"""The suite-wide comparison with stock Strawberry runs, and would catch a difference."""

from __future__ import annotations

from typing import Any

from strawberry.types import ExecutionResult

from tests.api_client import BALANCES, Api
from tests.conftest import ApiFactory
from tests.stock_comparison import StockComparison


async def test_every_query_sent_is_also_answered_by_stock_strawberry(
    api: Api, stock_comparison: StockComparison
) -> None:
    account = await api.subscribed_account()
    before = stock_comparison.compared

    await api.as_user(account, BALANCES)
    await api.post("{ me { nope } }", token=api.token(account))
    await api.as_service('mutation { createAccount(input: {email: "m@example.com"}) { id } }')

    assert stock_comparison.compared == before + 2  # the mutation is not replayed


async def test_an_answer_other_than_stock_is_reported(
    api: Api, app: object, stock_comparison: StockComparison
) -> None:
    # given the schema the app serves, and an answer stock Strawberry would not give
    schema = app.state.services and _schema_of(app)  # type: ignore[attr-defined]
    wrong = ExecutionResult(data={"plans": [{"plan": "GOLD"}]}, errors=None)
    before = len(stock_comparison.mismatches)

    # when it is compared
    await stock_comparison.replay(schema, wrong, "{ plans { plan } }", None, None, None)

    # then it is a mismatch (taken back, so this test's own check passes)
    found = stock_comparison.mismatches[before:]
    del stock_comparison.mismatches[before:]
    assert len(found) == 1 and "GOLD" in found[0]


def _schema_of(app: object) -> Any:
    route = next(r for r in app.routes if getattr(r, "path", "") == "/graphql")  # type: ignore[attr-defined]
    return route.endpoint.schema


async def test_with_the_fast_paths_switched_off_the_answers_are_the_same(
    api: Api, make_api: ApiFactory
) -> None:
    # given the same database served with and without the fast paths
    stock = await make_api(query_plans=False)
    account = await api.subscribed_account()
    token = api.token(account)

    # when both answer the same reads (JSON POSTs: the lane, or Strawberry's own path)
    documents = [BALANCES, "{ me { creditsTotal nope } }", "{ tariffs { tool credits } }"]
    fast = [await api.post(document, token=token) for document in documents]
    off = [await stock.post(document, token=token) for document in documents]

    # then
    assert off == fast
