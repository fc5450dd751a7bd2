"""Every document is bounded: depth, aliases, tokens, body size and list arguments."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api_client import Api
from tests.conftest import ApiFactory

CREATE = 'a{n}: createAccount(input: {{email: "alias{n}@example.com"}}) {{ id }}'
ACCOUNTS = "query($ids: [ID!]!) { accounts(ids: $ids) { id } }"


async def raw(api: Api, body: Any, **kw: Any) -> httpx.Response:
    return await api.client.post("/graphql", json=body, **kw)


def only_error(body: dict[str, Any]) -> dict[str, Any]:
    assert body.get("data") is None, body
    (error,) = body["errors"]
    return dict(error)


async def test_a_document_deeper_than_max_depth_is_refused_before_it_runs(
    make_api: ApiFactory,
) -> None:
    api = await make_api(max_depth=1)
    account_id = await api.create_account()
    await api.subscribe(account_id)
    deep = "{ me { subscription { plan } } }"
    shallow = "{ me { creditsTotal } }"

    refused = await api.post(deep, token=api.token(account_id))
    allowed = await api.post(shallow, token=api.token(account_id))

    assert "exceeds maximum operation depth of 1" in only_error(refused)["message"]
    assert allowed["data"]["me"]["creditsTotal"] == 1000


async def test_too_many_aliases_are_refused_and_no_mutation_runs(api: Api) -> None:
    # given 16 aliased createAccount mutations, one over the default of 15
    document = "mutation {" + " ".join(CREATE.format(n=n) for n in range(16)) + "}"

    # when
    body = await api.post(document, token=api.token())

    # then nothing was created: the first email is still free
    assert only_error(body)["message"] == "16 aliases found. Allowed: 15"
    fifteen = "mutation {" + " ".join(CREATE.format(n=n) for n in range(15)) + "}"
    created = await api.as_service(fifteen)
    assert len(created) == 15


async def test_a_document_over_max_tokens_is_refused_while_parsing(make_api: ApiFactory) -> None:
    api = await make_api(max_tokens=100)
    document = "{" + " ".join("plans { plan }" for _ in range(30)) + "}"

    body = await api.post(document)

    assert "Document contains more than 100 tokens" in only_error(body)["message"]


async def test_a_body_over_max_body_bytes_gets_413_before_it_is_read(api: Api) -> None:
    response = await api.client.post(
        "/graphql",
        content=b'{"query": "' + b" " * (10 * 1024 * 1024) + b'{ plans { plan } }"}',
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert response.headers["x-request-id"]


async def test_a_chunked_body_is_cut_at_max_body_bytes(make_api: ApiFactory) -> None:
    api = await make_api(max_body_bytes=2048)

    async def chunks() -> Any:
        yield b'{"query": "'
        for _ in range(10):
            yield b" " * 1024
        yield b'{ plans { plan } }"}'

    response = await api.client.post(
        "/graphql", content=chunks(), headers={"content-type": "application/json"}
    )
    small = await raw(api, {"query": "{ plans { plan } }"})

    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert small.status_code == 200


async def test_accounts_takes_at_most_max_account_ids(make_api: ApiFactory) -> None:
    api = await make_api(max_account_ids=2)

    refused = await api.post(ACCOUNTS, {"ids": ["a", "b", "c"]}, token=api.token())
    allowed = await api.as_service(ACCOUNTS, {"ids": ["a", "b"]})

    error = only_error(refused)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "ids"}
    assert allowed == {"accounts": [None, None]}


async def test_accounts_default_cap_is_100_ids(api: Api) -> None:
    refused = await api.post(ACCOUNTS, {"ids": [str(n) for n in range(101)]}, token=api.token())

    assert only_error(refused)["message"] == "ids takes at most 100 items."


@pytest.mark.no_stock_replay
async def test_the_limits_leave_the_validation_cache_hitting(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The limiters add validation rules; a new rule class per request would miss the cache,
    # and every request would be validated again.
    from graphql_schema.engine import documents

    validations: list[str] = []
    real_validate = documents.validate

    def counting(*args: Any, **kwargs: Any) -> Any:
        validations.append("validated")
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(documents, "validate", counting)
    document = "{ plans { plan monthlyCredits } tariffs { tool credits } }"

    for _ in range(4):
        assert "errors" not in await api.post(document)

    assert validations == ["validated"]
