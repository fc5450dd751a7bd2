"""How an operation is run and answered: what it leaves behind, what it sends back."""

import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from starlette.applications import Starlette
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from app.main import CreditGateGraphQL
from graphql_schema.context import Context
from graphql_schema.engine.execution import GatewayExecutionContext
from tests.api_client import Api

DASHBOARD = """query Dashboard { me { subscriptionBalance packBalance nextRenewalAt
  subscription { plan interval status monthlyCredits startedAt } } }"""
# A directive keeps a query off the plans (graphql_schema/engine/plans.py): graphql-core runs it.
DASHBOARD_BY_GRAPHQL_CORE = DASHBOARD.replace("packBalance", "packBalance @include(if: true)")


@contextmanager
def cyclic_garbage() -> Iterator[list[object]]:
    """What only the cyclic collector could free, of what the block allocated."""
    found: list[object] = []
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield found
        gc.collect()
        found.extend(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.mark.no_stock_replay
@pytest.mark.parametrize("document", [DASHBOARD, DASHBOARD_BY_GRAPHQL_CORE])
async def test_an_answered_read_leaves_no_cycle_holding_its_context(
    api: Api, document: str
) -> None:
    account = await api.subscribed_account("PRO")
    await api.as_user(account, document)  # warm: documents cached, pools filled

    with cyclic_garbage() as garbage:
        for _ in range(3):
            data = await api.as_user(account, document)
            assert data["me"]["subscription"]["plan"] == "PRO"

    held = [o for o in garbage if isinstance(o, Context | GatewayExecutionContext)]
    assert held == []


async def test_without_the_cut_the_executor_cycle_holds_the_context(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The check above can fail: graphql-core's own executor leaves the cycle it cuts.
    account = await api.subscribed_account("PRO")
    await api.as_user(account, DASHBOARD_BY_GRAPHQL_CORE)
    uncut = StrawberryGraphQLCoreExecutionContext.build_response
    monkeypatch.setattr(GatewayExecutionContext, "build_response", uncut)

    with cyclic_garbage() as garbage:
        await api.as_user(account, DASHBOARD_BY_GRAPHQL_CORE)

    assert any(isinstance(o, Context) for o in garbage)


def test_an_answer_is_json_text_even_with_what_orjson_refuses(app: Starlette) -> None:
    view = CreditGateGraphQL(app.state.services, app.state.settings)
    fine = {"data": {"me": {"email": "zoë@example.com", "creditsTotal": 20}}}
    lone_surrogate = {"errors": [{"message": "bad \ud800 text"}]}

    assert json.loads(view.encode_json(fine)) == fine
    assert json.loads(view.encode_json(lone_surrogate)) == lone_surrogate
