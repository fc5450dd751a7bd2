"""Outgoing webhooks: endpoints (service token), and delivering what the outbox holds.

A delivery is claimed in a short transaction (a lease, so a process that dies mid-send
leaves it to another after the lease), sent outside any transaction, and its outcome
written in another: delivered, retried on the domain's schedule, or failed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.domain.errors import InvalidInput, WebhookDeliveryNotFound, WebhookEndpointNotFound
from app.domain.webhooks import (
    ROTATION_OVERLAP,
    EventType,
    UnsafeUrl,
    accepted,
    next_attempt_at,
    should_disable,
    signing_secrets,
)
from app.persistence.outbox import DELIVERED, FAILED, PENDING, body_of, type_filter
from app.persistence.tables import WebhookDeliveryRow, WebhookEndpointRow
from app.services.deps import Services
from app.services.history import Page
from app.webhooks.port import Attempt
from app.webhooks.signing import new_secret, signed_headers

log = logging.getLogger("creditgate.webhooks")

MAX_DESCRIPTION = 500
MAX_PAGE = 100


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    url: str
    description: str | None
    event_types: tuple[EventType, ...]  # empty: every type
    enabled: bool
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime
    previous_secret_expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class EndpointWithSecret:
    endpoint: Endpoint
    secret: str


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    event_id: str
    endpoint_id: str
    account_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


def endpoint_of(row: WebhookEndpointRow) -> Endpoint:
    types = tuple(EventType(t) for t in row.event_types.strip(",").split(",") if t)
    return Endpoint(
        row.id,
        row.url,
        row.description,
        types,
        row.enabled,
        row.disabled_at,
        row.created_at,
        row.updated_at,
        row.previous_secret_expires_at,
    )


def delivery_of(row: WebhookDeliveryRow) -> Delivery:
    assert row.id is not None
    return Delivery(
        row.id,
        row.event_id,
        row.endpoint_id,
        row.account_id,
        row.event_type,
        row.status,
        row.attempts,
        row.next_attempt_at if row.status == PENDING else None,
        row.last_attempt_at,
        row.last_status_code,
        row.last_error,
        row.delivered_at,
        row.created_at,
    )


async def _checked_url(url: str, services: Services) -> str:
    try:
        await services.webhook_sender.check_url(url)
    except UnsafeUrl as refused:
        raise InvalidInput("url", str(refused)) from None
    return url


def _checked_description(description: str | None) -> str | None:
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise InvalidInput("description", f"description is at most {MAX_DESCRIPTION} characters.")
    return description


async def create_endpoint(
    url: str, event_types: Sequence[EventType], description: str | None, services: Services
) -> EndpointWithSecret:
    """A new endpoint and its signing secret (shown this once)."""
    await _checked_url(url, services)
    now = services.clock.now()
    row = WebhookEndpointRow(
        id=f"ep_{uuid.uuid4().hex}",
        url=url,
        description=_checked_description(description),
        event_types=type_filter([t.value for t in event_types]),
        secret=new_secret(),
        created_at=now,
        updated_at=now,
    )
    async with services.db.writing() as uow:
        uow.webhooks.add_endpoint(row)
        await uow.commit()
    return EndpointWithSecret(endpoint_of(row), row.secret)


async def update_endpoint(
    endpoint_id: str,
    services: Services,
    *,
    url: str | None = None,
    event_types: Sequence[EventType] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> Endpoint:
    """Change what is given; enabling a disabled endpoint resumes its pending deliveries."""
    if url is not None:
        await _checked_url(url, services)
    async with services.db.writing() as uow:
        row = await uow.webhooks.lock_endpoint(endpoint_id)
        if row is None:
            raise WebhookEndpointNotFound(endpoint_id)
        now = services.clock.now()
        if url is not None:
            row.url = url
        if event_types is not None:
            row.event_types = type_filter([t.value for t in event_types])
        if description is not None:
            row.description = _checked_description(description)
        if enabled is not None and enabled != row.enabled:
            row.enabled = enabled
            row.disabled_at = None if enabled else now
            row.failing_since = None
        row.updated_at = now
        await uow.commit()
    return endpoint_of(row)


async def delete_endpoint(endpoint_id: str, services: Services) -> str:
    """The endpoint and its deliveries are gone; the events stay in the outbox."""
    async with services.db.writing() as uow:
        if await uow.webhooks.lock_endpoint(endpoint_id) is None:
            raise WebhookEndpointNotFound(endpoint_id)
        await uow.webhooks.delete_endpoint(endpoint_id)
        await uow.commit()
    return endpoint_id


async def rotate_secret(endpoint_id: str, services: Services) -> EndpointWithSecret:
    """A new secret signs from now on; the old one signs beside it for 24 hours."""
    async with services.db.writing() as uow:
        row = await uow.webhooks.lock_endpoint(endpoint_id)
        if row is None:
            raise WebhookEndpointNotFound(endpoint_id)
        now = services.clock.now()
        row.previous_secret = row.secret
        row.previous_secret_expires_at = now + ROTATION_OVERLAP
        row.secret = new_secret()
        row.updated_at = now
        await uow.commit()
    return EndpointWithSecret(endpoint_of(row), row.secret)


async def list_endpoints(services: Services) -> list[Endpoint]:
    async with services.db.reading() as uow:
        return [endpoint_of(row) for row in await uow.webhooks.endpoints()]


async def deliveries_page(
    endpoint_id: str, first: int, after_id: int | None, status: str | None, services: Services
) -> Page[Delivery]:
    if not 1 <= first <= MAX_PAGE:
        raise InvalidInput("first", f"first must be between 1 and {MAX_PAGE}.")
    async with services.db.reading() as uow:
        if await uow.webhooks.endpoint(endpoint_id) is None:
            raise WebhookEndpointNotFound(endpoint_id)
        rows = await uow.webhooks.deliveries_page(
            endpoint_id, status=status, before_id=after_id, limit=first + 1
        )
    return Page([delivery_of(r) for r in rows[:first]], len(rows) > first)


async def redeliver(delivery_id: int, services: Services) -> Delivery:
    """Send the event again, as a new delivery due now (the receiver dedupes by webhook-id)."""
    async with services.db.writing() as uow:
        found = await uow.webhooks.delivery(delivery_id)
        if found is None:
            raise WebhookDeliveryNotFound(delivery_id)
        now = services.clock.now()
        row = WebhookDeliveryRow(
            event_id=found.event_id,
            endpoint_id=found.endpoint_id,
            account_id=found.account_id,
            event_type=found.event_type,
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        uow.webhooks.add_delivery(row)
        await uow.commit()
    if services.db.on_outbox is not None:
        services.db.on_outbox()
    return delivery_of(row)


# -- delivering ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery_id: int
    event_id: str
    event_type: str
    endpoint_id: str
    url: str
    body: str
    secrets: tuple[str, ...]
    queued_at: datetime


@dataclass(frozen=True, slots=True)
class Outcome:
    event_type: str
    # delivered, retrying, failed
    result: str
    # From the commit of its event to now, for delivered ones.
    latency_seconds: float | None
    disabled_endpoint: str | None = None


def lease_for(services: Services) -> timedelta:
    """Longer than any send may take: a claim outlives its attempt unless the process died."""
    return timedelta(seconds=2 * services.webhook_timeout_seconds + 5)


async def claim_due(
    services: Services, limit: int, room: dict[str, int], per_endpoint: int
) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries; at most ``room[endpoint]`` (else
    ``per_endpoint``) to each endpoint, so a slow one keeps its share and no more."""
    now = services.clock.now()
    full = [endpoint for endpoint, left in room.items() if left <= 0]
    async with services.db.reading() as uow:
        if not await uow.webhooks.any_due(now):
            return []
    async with services.db.writing() as uow:
        candidates = await uow.webhooks.claim_due(now, limit * 4, skip_endpoints=full)
        taken: list[WebhookDeliveryRow] = []
        counts: dict[str, int] = {}
        for row in candidates:
            left = room.get(row.endpoint_id, per_endpoint) - counts.get(row.endpoint_id, 0)
            if left > 0 and len(taken) < limit:
                taken.append(row)
                counts[row.endpoint_id] = counts.get(row.endpoint_id, 0) + 1
        if not taken:
            return []
        lease = now + lease_for(services)
        for row in taken:
            row.leased_until = lease
        events = await uow.webhooks.events([r.event_id for r in taken])
        endpoints = await uow.webhooks.endpoints_by_id([r.endpoint_id for r in taken])
        await uow.commit()
    claimed = []
    for row in taken:
        assert row.id is not None
        event, endpoint = events[row.event_id], endpoints[row.endpoint_id]
        secrets = signing_secrets(
            endpoint.secret,
            endpoint.previous_secret,
            endpoint.previous_secret_expires_at,
            now,
        )
        claimed.append(
            Claimed(
                row.id,
                row.event_id,
                row.event_type,
                row.endpoint_id,
                endpoint.url,
                body_of(event.payload, event.ledger_entry_ids),
                tuple(secrets),
                row.created_at,
            )
        )
    return claimed


async def attempt(claimed: Claimed, services: Services) -> Outcome:
    """Send one claimed delivery, signed now, and write down what came of it."""
    sent_at = services.clock.now()
    headers = signed_headers(claimed.event_id, sent_at, claimed.body, claimed.secrets)
    result = await services.webhook_sender.send(claimed.url, headers, claimed.body.encode())
    return await record_attempt(claimed, result, services)


async def record_attempt(claimed: Claimed, result: Attempt, services: Services) -> Outcome:
    async with services.db.writing() as uow:
        row = await uow.webhooks.lock_delivery(claimed.delivery_id)
        now = services.clock.now()
        if row is None or row.status != PENDING:
            return Outcome(claimed.event_type, "gone", None)  # endpoint deleted meanwhile
        row.attempts += 1
        row.last_attempt_at = now
        row.last_status_code = result.status_code
        row.last_error = result.error[:500] if result.error else None
        row.leased_until = None
        # The endpoint row is locked only to change it: deliveries to one endpoint that
        # succeed don't queue behind each other on it.
        endpoint = await uow.webhooks.endpoint(row.endpoint_id)
        disabled = None
        if result.status_code is not None and accepted(result.status_code):
            row.status, row.delivered_at = DELIVERED, now
            if endpoint is not None and endpoint.failing_since is not None:
                endpoint = await uow.webhooks.lock_endpoint(row.endpoint_id)
                if endpoint is not None:
                    endpoint.failing_since = None
            outcome = "delivered"
        else:
            endpoint = await uow.webhooks.lock_endpoint(row.endpoint_id)
            retry_at = next_attempt_at(row.attempts, now)
            if retry_at is None:
                row.status, outcome = FAILED, "failed"
            else:
                row.next_attempt_at, outcome = retry_at, "retrying"
            if endpoint is not None:
                endpoint.failing_since = endpoint.failing_since or now
                if endpoint.enabled and should_disable(endpoint.failing_since, now):
                    endpoint.enabled, endpoint.disabled_at = False, now
                    disabled = endpoint.id
        await uow.commit()
    if disabled is not None:
        log.warning(
            "webhook.endpoint_disabled endpoint=%s url=%s failing_since=%s",
            disabled,
            claimed.url,
            endpoint.failing_since.isoformat() if endpoint and endpoint.failing_since else None,
            extra={"event": "webhook.endpoint_disabled", "endpoint_id": disabled},
        )
    latency = (now - claimed.queued_at).total_seconds() if outcome == "delivered" else None
    return Outcome(claimed.event_type, outcome, latency, disabled)


@dataclass(frozen=True, slots=True)
class QueueState:
    depth: int
    oldest_pending_seconds: float


async def queue_state(services: Services) -> QueueState:
    now = services.clock.now()
    async with services.db.reading() as uow:
        depth, oldest = await uow.webhooks.queue_depth(now)
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    return QueueState(depth, age)


__all__ = ["DELIVERED", "FAILED", "PENDING"]
