"""Hand-written hostile requests: each gets a clear 4xx or a coded GraphQL error, never a 5xx."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest

from tests.api_client import PURCHASE_PACK, RUN_GENERATOR, Api
from tests.conftest import JWT_SECRET

PLANS = {"query": "{ plans { plan } }"}
ACCOUNT = "query($id: ID!) { account(id: $id) { id creditsTotal } }"
CREATE = "mutation($email: String!) { createAccount(input: {email: $email}) { id email } }"
ODD_STRINGS = [
    "\x00",
    "nul\x00inside",
    "\x01\x07\x1b[31m\x7f",
    "line\nbreak\r\n",
    "\u202eright-to-left",
    "e\u0301\u0301\u0301",
    "🎨🖌️👩🏽‍🎨",
    "\ud800",  # a lone surrogate: not encodable as UTF-8
    "\ufeffbom",
    "x" * 5000,
]


def assert_coded(body: dict[str, Any]) -> None:
    """Every error names a public code; none is a masked surprise."""
    for error in body.get("errors", []):
        assert error["message"] != "Unexpected error.", error
        assert error.get("extensions", {}).get("code"), error


async def raw_post(api: Api, content: bytes, content_type: str = "application/json") -> Any:
    return await api.client.post(
        "/graphql", content=content, headers={"content-type": content_type}
    )


@pytest.mark.parametrize(
    "content",
    [b"{", b"", b"{'query': 1}", b"\xff\xfe\x00", b"42", b'"query"', b"null", b"[]", b"[1, 2]"],
)
async def test_a_body_that_is_not_a_json_object_is_a_400(api: Api, content: bytes) -> None:
    response = await raw_post(api, content)

    assert response.status_code == 400, response.text


@pytest.mark.parametrize(
    "body",
    [
        {"query": 5},
        {"query": "{ plans { plan } }", "variables": "x"},
        {"query": "{ plans { plan } }", "variables": [1]},
        {"query": "{ plans { plan } }", "extensions": [1]},
        {"query": "{ plans { plan } }", "operationName": "Nope"},
        {},
    ],
)
async def test_a_malformed_graphql_request_is_a_400(api: Api, body: dict[str, Any]) -> None:
    response = await api.client.post("/graphql", json=body)

    assert response.status_code == 400, response.text


async def test_a_form_post_gets_415_and_an_empty_json_body_400(api: Api) -> None:
    form = await api.client.post("/graphql", data={"query": "{ plans { plan } }"})
    empty = await raw_post(api, b"")

    assert form.status_code == 415
    assert empty.status_code == 400


async def test_a_10_megabyte_body_gets_413(api: Api) -> None:
    response = await raw_post(api, b"[" + b"1," * (5 * 1024 * 1024) + b"1]")

    assert response.status_code == 413


async def test_a_syntax_error_is_a_graphql_error_not_a_500(api: Api) -> None:
    body = (await api.client.post("/graphql", json={"query": "{ plans { "})).json()

    assert body["errors"][0]["message"].startswith("Syntax Error")


@pytest.mark.parametrize("text", ODD_STRINGS)
async def test_odd_strings_in_every_input_get_a_coded_answer(api: Api, text: str) -> None:
    account_id = await api.subscribed_account()
    user = api.token(account_id)
    requests = [
        (RUN_GENERATOR, {"tool": "TURBO", "key": "k", "prompt": text}, user),
        (RUN_GENERATOR, {"tool": "TURBO", "key": text, "prompt": None}, user),
        (PURCHASE_PACK, {"packId": text, "key": "buy"}, user),
        (PURCHASE_PACK, {"packId": "pack-500", "key": text}, user),
        (CREATE, {"email": f"a{text}@example.com"}, api.token()),
        (CREATE, {"email": text}, api.token()),
        (ACCOUNT, {"id": text}, api.token()),
        (ACCOUNT, {"id": text}, user),
    ]

    for query, variables, token in requests:
        response = await api.client.post(
            "/graphql",
            # ASCII-escaped JSON, so that a lone surrogate can travel at all
            content=json.dumps({"query": query, "variables": variables}).encode(),
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
        )
        if text == "\ud800":
            assert response.status_code == 400, response.text
            assert "lone surrogate" in response.text
            continue
        assert response.status_code == 200, response.text
        assert_coded(response.json())


async def test_a_user_token_cannot_read_or_spend_another_account(api: Api) -> None:
    mine = await api.subscribed_account()
    theirs = await api.subscribed_account()
    token = api.token(mine)
    spend = {"tool": "TURBO", "key": "k"}
    other_run = RUN_GENERATOR.replace("prompt: $prompt", "prompt: $prompt, accountId: $acct")
    other_run = other_run.replace("$prompt: String)", "$prompt: String, $acct: ID)")

    read = await api.post(ACCOUNT, {"id": theirs}, token=token)
    many = await api.post("{ accounts(ids: []) { id } }", token=token)
    run = await api.post(other_run, {**spend, "acct": theirs}, token=token)

    for body in (read, many, run):
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body
    assert (await api.balances(theirs))["creditsTotal"] == 1000


def _token(claims: dict[str, Any], secret: str = JWT_SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def _unsigned(claims: dict[str, Any]) -> str:
    """An ``alg: none`` token: header and claims, no signature."""
    return jwt.encode(claims, "", algorithm="none")  # PyJWT reads "" as no key


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-a-jwt",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer a.b.c",
        "Bearer " + "x" * 4000,
    ],
)
async def test_a_malformed_authorization_is_unauthenticated(api: Api, authorization: str) -> None:
    response = await api.client.post(
        "/graphql", json={"query": "{ me { id } }"}, headers={"authorization": authorization}
    )

    assert response.status_code == 200
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_expired_forged_and_unsigned_tokens_are_unauthenticated(api: Api) -> None:
    account_id = await api.subscribed_account()
    now = api.clock.now()
    claims = {"sub": account_id, "role": "user", "iat": now, "exp": now + timedelta(hours=1)}
    service = {**claims, "sub": "service", "role": "service"}
    tokens = {
        "expired": api.token(account_id, ttl=timedelta(seconds=-1)),
        "forged": _token(claims, secret="another-secret-0123456789abcdef01234"),
        "alg none": _unsigned(claims),
        "alg none service": _unsigned(service),
        "no exp": _token({"sub": account_id, "role": "user"}),
        "unknown role": _token({**claims, "role": "admin"}),
    }

    for name, token in tokens.items():
        body = await api.post(RUN_GENERATOR, {"tool": "TURBO", "key": name}, token=token)
        assert body["data"] is None, name
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", (name, body)
    assert (await api.balances(account_id))["creditsTotal"] == 1000


async def test_nothing_on_the_wire_leaks_a_traceback(api: Api) -> None:
    attempts: list[httpx.Response] = [
        await raw_post(api, b'{"query": "{ plans { plan } }", "variables": {"a": '),
        await api.client.post("/graphql", json={"query": "{ __typename " * 50}),
        await api.client.post("/graphql", json={**PLANS, "operationName": 5}),
    ]

    for response in attempts:
        assert response.status_code < 500
        assert "Traceback" not in response.text and 'File "' not in response.text


async def test_nul_in_a_literal_or_a_variable_is_bad_input_before_anything_runs(api: Api) -> None:
    literal = 'mutation { createAccount(input: {email: "a\\u0000@example.com"}) { id } }'
    variable = "mutation($e: String!) { createAccount(input: {email: $e}) { id } }"

    by_literal = await api.post(literal, token=api.token())
    by_variable = await api.post(variable, {"e": "b\x00@example.com"}, token=api.token())

    for body in (by_literal, by_variable):
        assert body["data"] is None
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body


async def test_a_lone_surrogate_anywhere_in_the_body_is_a_400(api: Api) -> None:
    for body in (
        b'{"query": "{ plans { plan } }", "operationName": "\\ud800"}',
        b'{"query": "{ plans { plan } }", "extensions": {"x": "\\udfff"}}',
    ):
        response = await raw_post(api, body)
        assert response.status_code == 400, response.text


async def test_a_subscription_posted_over_http_is_a_400_json_error_not_an_unexpected_one(
    api: Api,
) -> None:
    # Subscriptions are served over the websocket (graphql-transport-ws) only.
    token = api.token(await api.subscribed_account())
    response = await api.client.post(
        "/graphql",
        json={"query": "subscription { creditsChanged { creditsTotal } }"},
        headers={"authorization": f"Bearer {token}"},
    )

    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {
                "message": "subscriptions are not allowed when using POST",
                "extensions": {"code": "BAD_REQUEST"},
            }
        ]
    }


async def test_a_variable_missing_or_of_the_wrong_type_is_told_not_masked(api: Api) -> None:
    query = "query($ids: [ID!]!) { accounts(ids: $ids) { id } }"

    missing = await api.post(query, {}, token=api.token())
    wrong = await api.post(query, {"ids": [{"no": 1}]}, token=api.token())

    assert missing == {
        "data": None,
        "errors": [
            {
                "message": "Variable '$ids' has invalid value: Expected a value of non-null"
                " type '[ID!]!' to be provided.",
                "locations": [{"line": 1, "column": 7}],
                "extensions": {"code": "BAD_USER_INPUT"},
            }
        ],
    }
    assert wrong["data"] is None
    assert [e["message"] for e in wrong["errors"]] == [
        "Variable '$ids' has invalid value at [0]: ID cannot represent value: {'no': 1}"
    ]
