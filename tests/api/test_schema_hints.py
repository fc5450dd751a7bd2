"""Production names nothing the client did not write: no "Did you mean" of any kind
(issue 12, item 6). Outside production the hints stay, to help developers."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api_client import Api
from tests.conftest import ApiFactory

RUN = "mutation($input: RunGeneratorInput!) { runGenerator(input: $input) { __typename } }"
RUN_TOOL = (
    'mutation($t: Tool!) { runGenerator(input: {tool: $t, idempotencyKey: "k"}) { __typename } }'
)
MISTAKES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("field", "{ plans { plann } }", None),
    (
        "enum value",
        'mutation { runGenerator(input: {tool: ULTR, idempotencyKey: "k"}) { __typename } }',
        None,
    ),
    (
        "input field",
        'mutation { runGenerator(input: {tol: ULTRA, idempotencyKey: "k"}) { __typename } }',
        None,
    ),
    ("argument", "mutation { claimGenerations(limt: 3) { id } }", None),
    (
        "type name",
        'mutation { runGenerator(input: {tool: ULTRA, idempotencyKey: "k"}) '
        "{ ... on GeneratorRn { __typename } } }",
        None,
    ),
    ("leaf selection", "{ me { ledger } }", None),
    ("variable enum value", RUN_TOOL, {"t": "ULTR"}),
    (
        "variable input field",
        RUN,
        {"input": {"tol": "ULTRA", "tool": "TURBO", "idempotencyKey": "k"}},
    ),
]


@pytest.fixture
async def production(make_api: ApiFactory) -> Api:
    return await make_api(env="production")


async def _messages(api: Api, query: str, variables: dict[str, Any] | None) -> list[str]:
    account_id = await api.create_account()
    body = await api.post(query, variables, token=api.token(account_id))
    assert body["errors"], body
    return [error["message"] for error in body["errors"]]


@pytest.mark.parametrize(("kind", "query", "variables"), MISTAKES, ids=[m[0] for m in MISTAKES])
async def test_production_suggests_nothing(
    production: Api, kind: str, query: str, variables: dict[str, Any] | None
) -> None:
    messages = await _messages(production, query, variables)

    assert not any("Did you mean" in message for message in messages), messages


@pytest.mark.parametrize(("kind", "query", "variables"), MISTAKES, ids=[m[0] for m in MISTAKES])
async def test_development_still_suggests(
    api: Api, kind: str, query: str, variables: dict[str, Any] | None
) -> None:
    messages = await _messages(api, query, variables)

    assert any("Did you mean" in message for message in messages), messages
