"""A JSON POST takes the gateway's short lane and is answered as Strawberry's view answers it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from strawberry.asgi import GraphQL
from strawberry.http.async_base_view import AsyncBaseHTTPView
from strawberry.types.unset import UNSET

from graphql_schema.engine.json_posts import JsonPostLane
from tests.api_client import BALANCES, RUN_GENERATOR, Api

JSON = "application/json"
PLANS = "{ plans { plan monthlyCredits } }"


def requests(token: str) -> dict[str, tuple[Any, str, dict[str, str]]]:
    """name -> (body, content type, extra headers): answers, GraphQL errors and 400s."""
    user = {"authorization": f"Bearer {token}"}
    run = {"query": RUN_GENERATOR, "variables": {"tool": "TURBO", "key": "lane"}}
    return {
        # First: the second pass replays it (idempotent), so the balances read the same.
        "a mutation": (run, JSON, user),
        "a public read": ({"query": PLANS}, JSON, {}),
        "the dashboard": ({"query": BALANCES}, JSON, user),
        "with charset": ({"query": PLANS}, "application/json; charset=utf-8", {}),
        "named operation": (
            {
                "query": "query A { plans { plan } } query B { tariffs { tool } }",
                "operationName": "B",
            },
            JSON,
            {},
        ),
        "unknown operation name": ({"query": PLANS, "operationName": "Nope"}, JSON, {}),
        "no operation name among two": (
            {"query": "query A { plans { plan } } query B { tariffs { tool } }"},
            JSON,
            {},
        ),
        "no query": ({}, JSON, {}),
        "null query": ({"query": None}, JSON, {}),
        "query not a string": ({"query": 5}, JSON, {}),
        "variables not an object": ({"query": PLANS, "variables": [1]}, JSON, {}),
        "extensions not an object": ({"query": PLANS, "extensions": "x"}, JSON, {}),
        "syntax error": ({"query": "{ plans { "}, JSON, {}),
        "unknown field": ({"query": "{ plans { colour } }"}, JSON, {}),
        "without a token": ({"query": BALANCES}, JSON, {}),
        "a forged token": ({"query": BALANCES}, JSON, {"authorization": "Bearer x.y.z"}),
        "a subscription": (
            {"query": "subscription { creditsChanged { creditsTotal } }"},
            JSON,
            user,
        ),
        "a batch": ([{"query": PLANS}], JSON, {}),
        "an empty batch": ([], JSON, {}),
        "a bare number": (42, JSON, {}),
        "not json": (b"{", JSON, {}),
    }


async def answer(
    api: Api, body: Any, content_type: str, headers: dict[str, str], accept: str | None = None
) -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"content-type": content_type, **headers, **({"accept": accept} if accept else {})}
    response = await api.client.post("/graphql", content=content, headers=sent)
    return comparable(response)


def comparable(response: httpx.Response) -> tuple[int, str, Any]:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return response.status_code, response.headers.get("content-type", ""), body


async def strawberry_run(
    self: Any, request: Any, context: Any = UNSET, root_value: Any = UNSET
) -> Any:
    return await GraphQL.run(self, request, context, root_value)


# What clients send: none (curl), Apollo Client 4, urql 6, and the draft's two media types.
ACCEPTS = {
    "no accept": None,
    "any": "*/*",
    "json": "application/json",
    "graphql-response+json": "application/graphql-response+json",
    "apollo": "application/graphql-response+json,application/json;q=0.9",
    "urql": "application/graphql-response+json, application/graphql+json, application/json,"
    " text/event-stream, multipart/mixed",
}


@pytest.mark.parametrize("accept", list(ACCEPTS.values()), ids=list(ACCEPTS))
async def test_every_kind_of_json_post_is_answered_as_strawberrys_view_answers_it(
    api: Api, monkeypatch: pytest.MonkeyPatch, accept: str | None
) -> None:
    token = api.token(await api.subscribed_account("PRO"))
    cases = requests(token)
    lane = {name: await answer(api, *case, accept) for name, case in cases.items()}

    monkeypatch.setattr(JsonPostLane, "run", strawberry_run)
    stock = {name: await answer(api, *case, accept) for name, case in cases.items()}

    for name in cases:
        assert lane[name] == stock[name], name
    statuses = {status for status, _, _ in lane.values()}
    assert statuses == {200, 400}  # both kinds were compared, not only answers
    media_types = {content_type for _, content_type, _ in lane.values()}
    assert len(media_types) == 1  # one media type per Accept, refusals included


async def test_a_media_type_in_capitals_is_json_too_which_strawberry_refuses(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Media types are case-insensitive (RFC 9110, 8.3.1); the one intended difference.
    body = {"query": PLANS}
    lane = await answer(api, body, "Application/JSON", {})

    monkeypatch.setattr(JsonPostLane, "run", strawberry_run)
    stock = await answer(api, body, "Application/JSON", {})

    assert lane[0] == 200 and "errors" not in lane[2]
    assert stock[:1] == (400,)


async def test_a_json_object_skips_strawberrys_general_parsing_and_a_batch_does_not(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The comparison above must not hold vacuously: the lane is really taken.
    parsed: list[str] = []
    general = AsyncBaseHTTPView.parse_http_body

    async def counting(self: Any, request: Any) -> Any:
        parsed.append(request.method)
        return await general(self, request)

    monkeypatch.setattr(AsyncBaseHTTPView, "parse_http_body", counting)

    await answer(api, {"query": PLANS}, JSON, {})
    assert parsed == []
    await answer(api, [{"query": PLANS}], JSON, {})
    assert parsed == ["POST"]
    await api.client.get("/graphql", params={"query": PLANS})
    assert parsed == ["POST", "GET"]
