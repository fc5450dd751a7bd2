"""Unexpected errors reach the client as "Unexpected error." and a request id; the log, all."""

from __future__ import annotations

import logging
import re

import pytest

from app.services import catalog
from tests.api_client import Api

LEAK = 'syntax error at or near "SELECT secret FROM accounts"'


def _explode(*_args: object) -> None:
    raise RuntimeError(LEAK)


async def test_an_unexpected_error_is_masked_and_logged_with_its_request_id(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # given a service that fails in a way nobody planned for
    monkeypatch.setattr(catalog, "list_tariffs", _explode)

    # when
    with caplog.at_level(logging.ERROR, logger="creditgate"):
        response = await api.client.post("/graphql", json={"query": "{ tariffs { tool } }"})

    # then the client sees the masked message and the id, nothing of the cause
    request_id = response.headers["x-request-id"]
    (error,) = response.json()["errors"]
    assert response.status_code == 200
    assert error["message"] == "Unexpected error."
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id}
    assert "SELECT" not in response.text and "RuntimeError" not in response.text
    assert "Traceback" not in response.text
    # and the log has the cause, under the same id
    (record,) = [r for r in caplog.records if r.name == "creditgate"]
    assert request_id in record.getMessage()
    assert record.exc_info is not None and record.exc_info[1] is not None
    assert LEAK in str(record.exc_info[1])


async def test_expected_errors_stay_typed_results(api: Api) -> None:
    account_id = await api.create_account()

    run = await api.run(account_id)  # no subscription, no credits

    assert run["__typename"] == "InsufficientCredits"
    assert run["required"] == 20


async def test_expected_top_level_errors_keep_their_code(api: Api) -> None:
    body = await api.post("{ me { id } }")

    assert body["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}


async def test_a_failure_outside_graphql_is_masked_too(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from app.main import CreditGateGraphQL

    async def broken_context(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError(LEAK)

    monkeypatch.setattr(CreditGateGraphQL, "get_context", broken_context)

    with caplog.at_level(logging.ERROR, logger="creditgate"):
        response = await api.client.post("/graphql", json={"query": "{ plans { plan } }"})

    assert response.status_code == 500
    assert response.json() == {
        "errors": [
            {
                "message": "Unexpected error.",
                "extensions": {"requestId": response.headers["x-request-id"]},
            }
        ]
    }
    assert any(response.headers["x-request-id"] in r.getMessage() for r in caplog.records)


async def test_every_response_carries_a_fresh_request_id(api: Api) -> None:
    first = await api.client.post("/graphql", json={"query": "{ plans { plan } }"})
    second = await api.client.post("/graphql", json={"query": "{ plans { plan } }"})

    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_a_sane_incoming_request_id_is_kept(api: Api) -> None:
    response = await api.client.post(
        "/graphql",
        json={"query": "{ plans { plan } }"},
        headers={"x-request-id": "edge-7f3a.42:b_1"},
    )

    assert response.headers["x-request-id"] == "edge-7f3a.42:b_1"


@pytest.mark.parametrize(
    "incoming", ["", "a" * 65, "with space", "semi;colon", "new\\nline", "é-unicode"]
)
async def test_an_odd_incoming_request_id_is_replaced(api: Api, incoming: str) -> None:
    response = await api.client.post(
        "/graphql",
        json={"query": "{ plans { plan } }"},
        headers=[(b"x-request-id", incoming.encode())],
    )

    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


async def test_expected_errors_are_not_logged_as_errors(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        await api.post("{ me { id } }")  # no token
        await api.post("{ nope }")  # not in the schema
    quiet = list(caplog.records)
    monkeypatch.setattr(catalog, "list_tariffs", _explode)

    with caplog.at_level(logging.ERROR):
        await api.post("{ tariffs { tool } }")

    assert quiet == []
    assert {r.name for r in caplog.records} == {"strawberry.execution", "creditgate"}
