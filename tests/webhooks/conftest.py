"""Webhook tests: a receiver per test, a clock near the wall clock (receivers verify the
signature's timestamp against their own clock, within 5 minutes), and GraphQL helpers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from app.clock import FrozenClock
from app.settings import Settings
from tests.api_client import Api
from tests.webhooks.receiver import Receiver

CREATE_ENDPOINT = """
mutation Create($url: String!, $types: [WebhookEventType!]!, $description: String) {
  createWebhookEndpoint(input: {url: $url, eventTypes: $types, description: $description}) {
    secret endpoint { id url eventTypes enabled description }
  }
}
"""
DELIVERIES = """
query Deliveries($id: ID!, $first: Int, $after: String, $status: WebhookDeliveryStatus) {
  webhookDeliveries(endpointId: $id, first: $first, after: $after, status: $status) {
    edges { cursor node { id eventId eventType status attempts lastStatusCode lastError
      nextAttemptAt deliveredAt accountId } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A hanging receiver costs a test this long, not 10 s.
    return Settings(_env_file=None, **{**settings.model_dump(), "webhook_timeout_seconds": 1.0})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


async def create_endpoint(
    api: Api, receiver: Receiver, types: list[str] | None = None, url: str | None = None
) -> str:
    """An endpoint for ``receiver``; the receiver learns its secret."""
    data = await api.as_service(
        CREATE_ENDPOINT, {"url": url or receiver.url, "types": types or [], "description": "t"}
    )
    created = data["createWebhookEndpoint"]
    receiver.secrets.append(created["secret"])
    return str(created["endpoint"]["id"])


async def deliveries(api: Api, endpoint_id: str, **variables: Any) -> list[dict[str, Any]]:
    data = await api.as_service(DELIVERIES, {"id": endpoint_id, "first": 100, **variables})
    return [edge["node"] for edge in data["webhookDeliveries"]["edges"]]


async def deliver(app: Any) -> Any:
    """One pass of this app's delivery worker (as ``creditgate webhooks deliver`` runs)."""
    return await app.state.webhook_worker.one_pass()
