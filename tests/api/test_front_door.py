"""``/graphql`` over HTTP skips Starlette's own layers with the fast paths on, and answers
every request exactly as through them (the fast paths off)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.routing import Router

from tests.api.test_over_http import ORIGIN, PLANS, REFUSALS
from tests.api_client import BALANCES, Api
from tests.conftest import ApiFactory

ANSWERED: dict[str, tuple[str, dict[str, Any]]] = {
    **REFUSALS,
    "a query": ("POST", {"json": {"query": PLANS}}),
    "a query over GET": ("GET", {"params": {"query": PLANS}}),
    "a batch": ("POST", {"json": [{"query": PLANS}, {"query": "{ nope }"}]}),
    "a CORS preflight": (
        "OPTIONS",
        {
            "headers": {
                "origin": ORIGIN,
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            }
        },
    ),
    "a cross-origin POST": ("POST", {"json": {"query": PLANS}, "headers": {"origin": ORIGIN}}),
    "a client's request id": (
        "POST",
        {"json": {"query": PLANS}, "headers": {"x-request-id": "t-1"}},
    ),
}


def _seen(response: Any) -> tuple[int, list[tuple[str, str]], Any]:
    headers = sorted(
        (name, value)
        for name, value in response.headers.items()
        if name != "x-request-id" or value == "t-1"
    )
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return response.status_code, headers, body


@pytest.mark.parametrize("name", list(ANSWERED))
async def test_graphql_answers_alike_through_the_front_door_and_through_starlette(
    make_api: ApiFactory, name: str
) -> None:
    # given the same settings with the fast paths on and off
    fast = await make_api(cors_origins=(ORIGIN,))
    off = await make_api(cors_origins=(ORIGIN,), query_plans=False)
    method, arguments = ANSWERED[name]

    # when both answer the same request
    answers = [await api.client.request(method, "/graphql", **arguments) for api in (fast, off)]

    # then the status, the headers and the body are the same; each has a request id
    assert _seen(answers[0]) == _seen(answers[1])
    assert all(answer.headers["x-request-id"] for answer in answers)


async def test_only_graphql_over_http_skips_the_router(
    api: Api, make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    routed: list[str] = []
    route = Router.__call__

    async def counting(self: Router, scope: Any, receive: Any, send: Any) -> None:
        routed.append(scope["path"])
        await route(self, scope, receive, send)

    monkeypatch.setattr(Router, "__call__", counting)
    account = await api.subscribed_account()
    routed.clear()

    await api.as_user(account, BALANCES)
    assert (await api.client.get("/healthz")).status_code == 200
    off = await make_api(query_plans=False)
    await off.as_user(account, BALANCES)

    assert routed == ["/healthz", "/graphql"]  # the second /graphql: fast paths off


async def test_an_exception_before_graphql_answers_is_a_masked_500_with_the_request_id(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.main import CreditGateGraphQL

    async def broken(*_args: Any) -> Any:
        raise RuntimeError("context failed")

    monkeypatch.setattr(CreditGateGraphQL, "get_context", broken)
    for api in (await make_api(), await make_api(query_plans=False)):
        response = await api.client.post("/graphql", json={"query": PLANS})
        error = response.json()["errors"][0]
        assert response.status_code == 500 and error["message"] == "Unexpected error."
        assert error["extensions"]["requestId"] == response.headers["x-request-id"]
