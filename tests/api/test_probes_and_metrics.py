"""/healthz, /readyz and /metrics through the app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.clock import FrozenClock
from app.main import create_app
from app.settings import Settings
from tests.api_client import Api


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_healthz_says_alive(api: Api) -> None:
    response = await api.client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "alive"})


@pytest.fixture
async def started(app: object) -> AsyncIterator[None]:
    """What the lifespan starts (httpx's transport runs no lifespan): the event listener."""
    live = app.state.live  # type: ignore[attr-defined]
    await live.start()
    try:
        yield
    finally:
        await live.stop()


async def test_readyz_is_ready_on_a_migrated_database(api: Api, started: None) -> None:
    response = await api.client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ready" and body["revision"] == body["head"]


@pytest.fixture
async def unmigrated(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        _env_file=None,
        env="test",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}",
    )
    app = create_app(settings, clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client
    await app.state.services.db.dispose()


async def test_readyz_is_not_ready_before_migrations(unmigrated: httpx.AsyncClient) -> None:
    response = await unmigrated.get("/readyz")
    assert response.status_code == 503
    assert "migrations not at head" in response.json()["problems"]


async def test_metrics_count_operations_by_name_and_result_type_and_credits_by_tool(
    api: Api,
) -> None:
    # given
    account_id = await api.subscribed_account()
    broke = await api.create_account()

    # when
    await api.run(account_id, tool="PRO", key="r1")
    await api.run(broke, tool="PRO", key="r2")
    await api.buy(account_id)
    await api.post("query Me { me { id } }", token="not-a-token")
    response = await api.client.get("/metrics")

    # then
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    requests = "creditgate_graphql_requests_total"
    assert value(requests, operation="Run", type="mutation", result="GeneratorRun") == 1
    assert value(requests, operation="Run", type="mutation", result="InsufficientCredits") == 1
    assert value(requests, operation="Buy", type="mutation", result="PackPurchased") == 1
    assert value(requests, operation="Me", type="query", result="UNAUTHENTICATED") == 1
    latency = "creditgate_graphql_request_duration_seconds_count"
    assert value(latency, operation="Run", type="mutation") == 2
    pro_tariff = 38
    assert value("creditgate_credits_spent_total", tool="PRO", bucket="SUBSCRIPTION") == pro_tariff
    assert value("creditgate_credits_granted_total", tool="none", bucket="SUBSCRIPTION") == 1000
    assert value("creditgate_credits_granted_total", tool="none", bucket="PACK") == 500
    assert value("creditgate_open_holds") == 1
    assert value("creditgate_websocket_subscriptions", field="creditsChanged") == 0
