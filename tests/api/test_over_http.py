"""GraphQL over HTTP as front-ends speak it: JSON refusals with codes, the graphql-response
media type and its status codes, batches as Apollo's BatchHttpLink sends them, CORS headers."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.api_client import RUN_GENERATOR, Api
from tests.conftest import ApiFactory
from tests.db import Rows

GRAPHQL_RESPONSE = "application/graphql-response+json"
PLANS = "{ plans { plan } }"
ORIGIN = "https://editor.example.com"
TRACING_HEADERS = [
    "traceparent",
    "tracestate",
    "baggage",
    "sentry-trace",
    "apollographql-client-name",
    "apollographql-client-version",
]


@pytest.fixture
async def production(make_api: ApiFactory) -> Api:
    return await make_api(env="production", cors_origins=(ORIGIN,))


@pytest.fixture(params=["production", "development"])
async def either(request: pytest.FixtureRequest, make_api: ApiFactory) -> Api:
    env = "production" if request.param == "production" else "development"
    return await make_api(env=env, cors_origins=(ORIGIN,))


def json_body(content: bytes) -> dict[str, Any]:
    return {"content": content, "headers": {"content-type": "application/json"}}


# name -> (method, httpx arguments): every way a request to /graphql is refused.
REFUSALS: dict[str, tuple[str, dict[str, Any]]] = {
    "malformed JSON": ("POST", json_body(b"{")),
    "an empty body": ("POST", json_body(b"")),
    "no query": ("POST", json_body(b"{}")),
    "a query that is not a string": ("POST", json_body(b'{"query": 5}')),
    "variables not an object": (
        "POST",
        json_body(b'{"query": "{ plans { plan } }", "variables": 1}'),
    ),
    "a bare number": ("POST", json_body(b"42")),
    "a body not in UTF-8": ("POST", json_body(b'{"query": "\xff"}')),
    "a form post": ("POST", {"data": {"query": PLANS}}),
    "a body over the limit": ("POST", json_body(b'{"query": "' + b" " * 200_000 + b'"}')),
    "a GET without a query": ("GET", {"headers": {"accept": "application/json"}}),
    "a GET whose variables are not JSON": ("GET", {"params": {"query": PLANS, "variables": "{"}}),
    "a mutation over GET": (
        "GET",
        {"params": {"query": 'mutation { createAccount(input: {email: "g@x.io"}) { id } }'}},
    ),
    "a subscription over POST": (
        "POST",
        {"json": {"query": "subscription { creditsChanged { creditsTotal } }"}},
    ),
    "a PUT": ("PUT", json_body(b'{"query": "{ plans { plan } }"}')),
    "a DELETE": ("DELETE", {}),
    "an OPTIONS that is no preflight": ("OPTIONS", {}),
    "an oversized batch": ("POST", {"json": [{"query": PLANS}] * 11}),
    "an empty batch": ("POST", {"json": []}),
    "a batch item that is not an object": ("POST", {"json": [{"query": PLANS}, 1]}),
    "a batch item whose query is not a string": ("POST", {"json": [{"query": 5}]}),
}


@pytest.mark.parametrize("accept", [None, GRAPHQL_RESPONSE])
@pytest.mark.parametrize("name", list(REFUSALS))
async def test_every_refusal_on_graphql_is_a_json_error_body_with_a_code(
    either: Api, name: str, accept: str | None
) -> None:
    method, arguments = REFUSALS[name][0], dict(REFUSALS[name][1])
    headers = {**arguments.pop("headers", {}), **({"accept": accept} if accept else {})}

    response = await either.client.request(method, "/graphql", headers=headers, **arguments)

    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith(("application/json", GRAPHQL_RESPONSE))
    body = response.json()
    assert "data" not in body
    assert body["errors"][0]["message"]
    assert body["errors"][0]["extensions"]["code"]


async def test_graphiql_asked_for_in_production_is_a_json_404(production: Api) -> None:
    response = await production.client.get("/graphql", headers={"accept": "text/html"})

    assert response.status_code == 404
    assert response.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_queries_over_get_are_answered_in_every_environment(either: Api) -> None:
    response = await either.client.get(
        "/graphql",
        params={"query": "query P { plans { plan } }", "operationName": "P", "variables": "{}"},
        headers={"accept": GRAPHQL_RESPONSE},
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    assert response.json()["data"]["plans"]
    # the media type depends on Accept: a cache keeps one answer per Accept
    assert "Accept" in response.headers["vary"]


# --- application/graphql-response+json ---


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"query": "{ plans { "}, "GRAPHQL_PARSE_FAILED"),
        ({"query": "{ plans { colour } }"}, "GRAPHQL_VALIDATION_FAILED"),
        (
            {"query": "query($ids: [ID!]!) { accounts(ids: $ids) { id } }", "variables": {}},
            "BAD_USER_INPUT",
        ),
        (
            {
                "query": "query($ids: [ID!]!) { accounts(ids: $ids) { id } }",
                "variables": {"ids": [{"no": 1}]},
            },
            "BAD_USER_INPUT",
        ),
    ],
    ids=["syntax error", "unknown field", "missing variable", "variable of the wrong type"],
)
async def test_a_request_error_is_400_without_data_in_graphql_response_json_200_in_json(
    api: Api, body: dict[str, Any], code: str
) -> None:
    token = {"authorization": f"Bearer {api.token()}"}

    modern = await api.client.post(
        "/graphql", json=body, headers={"accept": GRAPHQL_RESPONSE, **token}
    )
    legacy = await api.client.post(
        "/graphql", json=body, headers={"accept": "application/json", **token}
    )

    assert modern.status_code == 400
    assert modern.headers["content-type"] == f"{GRAPHQL_RESPONSE}; charset=utf-8"
    assert "data" not in modern.json()
    assert modern.json()["errors"][0]["extensions"]["code"] == code
    # application/json keeps today's answer: 200, data null, the same errors
    assert legacy.status_code == 200
    assert legacy.headers["content-type"] == "application/json"
    assert legacy.json() == {"data": None, **modern.json()}


async def test_once_execution_started_the_answer_is_200_with_data(api: Api) -> None:
    # `me` without a token fails as a field: execution started, so 200 and a data entry.
    response = await api.client.post(
        "/graphql",
        json={"query": "{ me { id } plans { plan } }"},
        headers={"accept": GRAPHQL_RESPONSE},
    )

    assert response.status_code == 200
    body = response.json()
    assert "data" in body
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert body["errors"][0]["path"] == ["me"]


async def test_a_whole_request_refused_for_its_caller_is_401_or_403(
    make_api: ApiFactory, tmp_path: Any
) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        '{"format": "apollo-persisted-query-manifest", "version": 1, "operations": []}'
    )
    trusted_only = await make_api(trusted_documents_file=manifest, trusted_documents_only=True)
    accept = {"accept": GRAPHQL_RESPONSE}
    free = {"query": PLANS}

    forged = await trusted_only.client.post(
        "/graphql", json=free, headers={**accept, "authorization": "Bearer x.y.z"}
    )
    not_listed = await trusted_only.client.post("/graphql", json=free, headers=accept)
    legacy = await trusted_only.client.post("/graphql", json=free)

    assert forged.status_code == 401
    assert forged.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert not_listed.status_code == 403
    assert not_listed.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_IN_LIST"
    assert "data" not in not_listed.json()
    assert legacy.status_code == 200 and legacy.json()["data"] is None


async def test_a_rate_limited_request_is_429_with_retry_after(make_api: ApiFactory) -> None:
    limited = await make_api(rate_limits_enabled=True, rate_limit_per_account="1/minute")
    account_id = await limited.subscribed_account()
    token = limited.token(account_id)
    headers = {"accept": GRAPHQL_RESPONSE, "authorization": f"Bearer {token}"}

    def run(key: str) -> dict[str, Any]:
        return {"query": RUN_GENERATOR, "variables": {"tool": "TURBO", "key": key}}

    first = await limited.client.post("/graphql", json=run("a"), headers=headers)
    second = await limited.client.post("/graphql", json=run("b"), headers=headers)

    assert first.status_code == 200
    assert second.status_code == 429
    assert second.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert int(second.headers["retry-after"]) >= 1


# --- batches ---


async def test_a_batch_is_answered_in_order_each_operation_seeing_the_ones_before(
    api: Api,
) -> None:
    account_id = await api.subscribed_account()
    token = api.token(account_id)
    total = "{ me { creditsTotal } }"
    run = {"query": RUN_GENERATOR, "variables": {"tool": "TURBO", "key": "batched"}}

    response = await api.client.post(
        "/graphql",
        json=[{"query": total}, run, {"query": total}],
        headers={"authorization": f"Bearer {token}"},
    )

    assert response.status_code == 200
    before, ran, after = response.json()
    assert ran["data"]["runGenerator"]["__typename"] == "GeneratorRun"
    cost = ran["data"]["runGenerator"]["generation"]["cost"]
    assert after["data"]["me"]["creditsTotal"] == before["data"]["me"]["creditsTotal"] - cost


async def test_an_oversized_batch_is_refused_whole_before_anything_runs(
    make_api: ApiFactory, rows: Rows
) -> None:
    capped = await make_api(max_batch_size=3)
    create = 'mutation { createAccount(input: {email: "b%d@example.com"}) { id } }'
    batch = [{"query": create % i} for i in range(4)]
    service = {"authorization": f"Bearer {capped.token()}"}

    response = await capped.client.post("/graphql", json=batch, headers=service)
    within = await capped.client.post("/graphql", json=batch[:3], headers=service)

    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BATCH_TOO_LARGE"
    assert within.status_code == 200 and len(within.json()) == 3
    assert await rows.count("accounts") == 3  # the refused batch created none


async def test_batching_set_to_zero_refuses_every_batch(make_api: ApiFactory) -> None:
    unbatched = await make_api(max_batch_size=0)

    response = await unbatched.client.post("/graphql", json=[{"query": PLANS}])

    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BATCHING_NOT_ENABLED"


async def test_each_operation_of_a_batch_passes_the_limits_as_if_sent_alone(
    make_api: ApiFactory,
) -> None:
    shallow = await make_api(max_depth=1, max_aliases=1)
    deep = "{ me { subscription { plan } } }"
    aliased = "{ a: plans { plan } b: plans { plan } }"

    response = await shallow.client.post(
        "/graphql", json=[{"query": PLANS}, {"query": deep}, {"query": aliased}]
    )

    fine, too_deep, too_many = response.json()
    assert fine == (await shallow.client.post("/graphql", json={"query": PLANS})).json()
    assert too_deep == (await shallow.client.post("/graphql", json={"query": deep})).json()
    assert too_many == (await shallow.client.post("/graphql", json={"query": aliased})).json()
    assert "exceeds maximum operation depth" in too_deep["errors"][0]["message"]
    assert too_many["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_each_mutation_of_a_batch_counts_against_the_rate_limit(
    make_api: ApiFactory,
) -> None:
    limited = await make_api(rate_limits_enabled=True, rate_limit_per_account="2/minute")
    token = limited.token(await limited.subscribed_account())

    def run(key: str) -> dict[str, Any]:
        return {"query": RUN_GENERATOR, "variables": {"tool": "TURBO", "key": key}}

    response = await limited.client.post(
        "/graphql",
        json=[run("a"), run("b"), run("c")],
        headers={"authorization": f"Bearer {token}"},
    )

    first, second, third = response.json()
    assert first["data"]["runGenerator"]["__typename"] == "GeneratorRun"
    assert second["data"]["runGenerator"]["__typename"] == "GeneratorRun"
    assert third["data"] is None
    assert third["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


async def test_each_operation_of_a_batch_passes_the_trusted_document_rules(
    make_api: ApiFactory, tmp_path: Any
) -> None:
    from graphql_schema.engine.trusted_documents import document_hash

    listed = "query Plans { plans { plan } }"
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        '{"format": "apollo-persisted-query-manifest", "version": 1, "operations": ['
        f'{{"id": "{document_hash(listed)}", "name": "Plans", "type": "query", '
        f'"body": "{listed}"}}]}}'
    )
    trusted_only = await make_api(trusted_documents_file=manifest, trusted_documents_only=True)
    by_hash = {
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": document_hash(listed)}}
    }

    response = await trusted_only.client.post(
        "/graphql",
        json=[by_hash, {"query": "{ tariffs { tool } }"}],
        headers={"accept": GRAPHQL_RESPONSE},
    )

    assert response.status_code == 200
    allowed, refused = response.json()
    assert allowed["data"]["plans"]
    assert refused["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_IN_LIST"
    assert "data" not in refused  # each item shaped as if sent alone


async def test_a_refused_operation_in_a_batch_does_not_stop_the_others(api: Api) -> None:
    response = await api.client.post(
        "/graphql",
        json=[{"query": "subscription { creditsChanged { creditsTotal } }"}, {"query": PLANS}],
    )

    refused, answered = response.json()
    assert refused["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert answered["data"]["plans"]


# --- CORS ---


async def test_a_preflight_with_tracing_and_client_awareness_headers_is_allowed(
    production: Api,
) -> None:
    asked = ",".join(["authorization", "content-type", *TRACING_HEADERS])

    response = await production.client.options(
        "/graphql",
        headers={
            "origin": ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": asked,
        },
    )

    assert response.status_code == 200
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert set(TRACING_HEADERS) <= allowed
    assert response.headers["access-control-allow-origin"] == ORIGIN


async def test_the_allowed_request_headers_come_from_the_setting(make_api: ApiFactory) -> None:
    strict = await make_api(cors_origins=(ORIGIN,), cors_allow_headers=("authorization",))

    def preflight(header: str) -> Any:
        return strict.client.options(
            "/graphql",
            headers={
                "origin": ORIGIN,
                "access-control-request-method": "POST",
                "access-control-request-headers": header,
            },
        )

    assert (await preflight("authorization")).status_code == 200
    refused: httpx.Response = await preflight("traceparent")
    assert refused.status_code == 400


def test_the_cors_headers_setting_reads_a_comma_separated_list() -> None:
    from app.settings import Settings

    settings = Settings(_env_file=None, cors_allow_headers="Authorization, traceparent")

    assert settings.cors_allow_headers == ("authorization", "traceparent")
    assert set(TRACING_HEADERS) <= set(Settings(_env_file=None).cors_allow_headers)


async def test_variables_as_a_map_and_as_url_encoded_json_over_get_are_read_in_production(
    production: Api,
) -> None:
    # The audits that check this use introspection, which production refuses; the rule itself
    # holds for every other document.
    query = "query One($id: ID!) { account(id: $id) { id } }"
    service = {"authorization": f"Bearer {production.token()}", "accept": GRAPHQL_RESPONSE}

    posted = await production.client.post(
        "/graphql", json={"query": query, "variables": {"id": "nobody"}}, headers=service
    )
    got = await production.client.get(
        "/graphql",
        params={"query": query, "variables": json.dumps({"id": "nobody"})},
        headers=service,
    )

    assert posted.status_code == got.status_code == 200
    assert posted.json() == got.json() == {"data": {"account": None}}
