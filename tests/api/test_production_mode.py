"""Production: no introspection, no GraphiQL, JSON POSTs only, CORS by list; GET queries
are served as in development (clients send them: urql, persisted queries)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api_client import Api
from tests.conftest import ApiFactory
from tests.db import Rows

INTROSPECTION = "{ __schema { queryType { name } } }"
ALLOWED = "https://app.example.com"


@pytest.fixture
async def production(make_api: ApiFactory) -> Api:
    return await make_api(env="production", cors_origins=(ALLOWED,))


async def test_introspection_is_refused_in_production(production: Api, api: Api) -> None:
    refused = await production.post(INTROSPECTION)
    allowed = await api.post(INTROSPECTION)

    assert refused["data"] is None
    assert "introspection has been disabled" in refused["errors"][0]["message"]
    assert allowed["data"]["__schema"]["queryType"]["name"] == "Query"


async def test_production_does_not_suggest_field_names(production: Api, api: Api) -> None:
    refused = await production.post("{ plan { plan } }")
    suggested = await api.post("{ plan { plan } }")

    assert "Did you mean" not in refused["errors"][0]["message"]
    assert "Did you mean" in suggested["errors"][0]["message"]


async def test_graphiql_is_served_only_outside_production(production: Api, api: Api) -> None:
    html = {"accept": "text/html"}

    assert (await production.client.get("/graphql", headers=html)).status_code == 404
    development = await api.client.get("/graphql", headers=html)
    assert development.status_code == 200
    assert "graphiql" in development.text.lower()


async def test_queries_over_get_are_served_in_production_as_in_development(
    production: Api, api: Api
) -> None:
    params = {"query": "{ plans { plan } }"}

    in_production = await production.client.get("/graphql", params=params)
    in_development = await api.client.get("/graphql", params=params)

    assert in_production.status_code == in_development.status_code == 200
    assert in_production.json() == in_development.json()
    assert in_production.json()["data"]["plans"]


@pytest.mark.parametrize("mode", ["production", "development"])
async def test_mutations_are_never_run_over_get_405_with_a_json_error(
    production: Api, api: Api, rows: Rows, mode: str
) -> None:
    client = production if mode == "production" else api
    mutation = 'mutation { createAccount(input: {email: "get@example.com"}) { id } }'
    response = await client.client.get(
        "/graphql", params={"query": mutation}, headers={"authorization": f"Bearer {api.token()}"}
    )

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    assert await rows.count("accounts") == 0


@pytest.mark.parametrize("mode", ["production", "development"])
async def test_subscriptions_are_never_run_over_get(production: Api, api: Api, mode: str) -> None:
    client = production if mode == "production" else api
    subscription = "subscription { creditsChanged { creditsTotal } }"
    response = await client.client.get("/graphql", params={"query": subscription})

    assert response.status_code == 405
    assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize(
    "content",
    [
        {"data": {"query": "{ plans { plan } }"}},  # an HTML form post
        {"content": b"{ plans { plan } }", "headers": {"content-type": "text/plain"}},
        {"content": b"{ plans { plan } }", "headers": {"content-type": "application/graphql"}},
        {"content": b'{"query": "{ plans { plan } }"}', "headers": {"content-type": "json"}},
    ],
)
async def test_a_post_that_is_not_application_json_gets_415(
    production: Api, content: dict[str, Any]
) -> None:
    response = await production.client.post("/graphql", **content)

    assert response.status_code == 415
    assert response.json()["errors"][0]["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


async def test_json_with_a_charset_is_accepted(production: Api) -> None:
    response = await production.client.post(
        "/graphql",
        content=b'{"query": "{ plans { plan } }"}',
        headers={"content-type": "application/json; charset=utf-8"},
    )

    assert response.status_code == 200
    assert response.json()["data"]["plans"]


async def test_cors_allows_only_the_configured_origins(production: Api) -> None:
    preflight = {"access-control-request-method": "POST"}

    allowed = await production.client.options("/graphql", headers={"origin": ALLOWED, **preflight})
    refused = await production.client.options(
        "/graphql", headers={"origin": "https://evil.example.com", **preflight}
    )
    simple = await production.client.post(
        "/graphql", json={"query": "{ plans { plan } }"}, headers={"origin": ALLOWED}
    )

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    assert simple.headers["access-control-allow-origin"] == ALLOWED
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


async def test_without_configured_origins_no_cross_origin_call_is_allowed(api: Api) -> None:
    response = await api.client.post(
        "/graphql",
        json={"query": "{ plans { plan } }"},
        headers={"origin": "https://evil.example.com"},
    )

    assert "access-control-allow-origin" not in response.headers


def test_cors_origins_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.settings import Settings

    monkeypatch.setenv("CREDITGATE_CORS_ORIGINS", "https://a.example.com, https://b.example.com")

    settings = Settings(_env_file=None)

    assert settings.cors_origins == ("https://a.example.com", "https://b.example.com")
