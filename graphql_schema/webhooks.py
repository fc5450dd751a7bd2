"""Outgoing webhooks in the schema: endpoints and deliveries (service token only)."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime

import strawberry

from app.services import webhooks
from app.services.webhooks import Delivery, Endpoint, EndpointWithSecret
from graphql_schema.context import Info
from graphql_schema.engine.limits import page_size
from graphql_schema.enums import WebhookDeliveryStatus, WebhookEventType
from graphql_schema.errors import bad_input, or_error
from graphql_schema.pagination import Connection, connection

_DELIVERY_ID = re.compile(r"[0-9]{1,18}")


@strawberry.type(description="A receiver of the platform's events (Standard Webhooks).")
class WebhookEndpoint:
    id: strawberry.ID
    url: str
    description: str | None
    event_types: list[WebhookEventType] = strawberry.field(
        description="The event types sent to it; empty: every type."
    )
    enabled: bool = strawberry.field(
        description="False once it failed for 5 days (or was switched off); updateWebhook"
        "Endpoint(enabled: true) resumes its pending deliveries."
    )
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime
    previous_secret_expires_at: datetime | None = strawberry.field(
        description="After a rotation, the old secret signs beside the new one until then."
    )

    @classmethod
    def from_domain(cls, endpoint: Endpoint) -> WebhookEndpoint:
        return cls(
            id=strawberry.ID(endpoint.id),
            url=endpoint.url,
            description=endpoint.description,
            event_types=list(endpoint.event_types),
            enabled=endpoint.enabled,
            disabled_at=endpoint.disabled_at,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
            previous_secret_expires_at=endpoint.previous_secret_expires_at,
        )


@strawberry.type(description="An endpoint with its signing secret: shown this once only.")
class WebhookEndpointWithSecret:
    endpoint: WebhookEndpoint
    secret: str = strawberry.field(description="whsec_...: verify signatures with it.")

    @classmethod
    def from_domain(cls, created: EndpointWithSecret) -> WebhookEndpointWithSecret:
        return cls(endpoint=WebhookEndpoint.from_domain(created.endpoint), secret=created.secret)


@strawberry.type(description="One event owed to one endpoint, and how its attempts went.")
class WebhookDelivery:
    id: strawberry.ID
    event_id: strawberry.ID = strawberry.field(description="The webhook-id header: dedupe on it.")
    event_type: str
    endpoint_id: strawberry.ID
    account_id: strawberry.ID
    status: WebhookDeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime

    @classmethod
    def from_domain(cls, d: Delivery) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(str(d.id)),
            event_id=strawberry.ID(d.event_id),
            event_type=d.event_type,
            endpoint_id=strawberry.ID(d.endpoint_id),
            account_id=strawberry.ID(d.account_id),
            status=WebhookDeliveryStatus(d.status),
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at,
            last_attempt_at=d.last_attempt_at,
            last_status_code=d.last_status_code,
            last_error=d.last_error,
            delivered_at=d.delivered_at,
            created_at=d.created_at,
        )


@strawberry.input
class CreateWebhookEndpointInput:
    url: str = strawberry.field(description="In production: https, to a public address.")
    event_types: list[WebhookEventType] = strawberry.field(
        default_factory=list, description="Empty: every event type."
    )
    description: str | None = None


@strawberry.input
class UpdateWebhookEndpointInput:
    id: strawberry.ID
    url: str | None = None
    event_types: list[WebhookEventType] | None = None
    description: str | None = None
    enabled: bool | None = None


def delivery_cursor(delivery_id: int) -> str:
    return base64.urlsafe_b64encode(f"delivery:{delivery_id}".encode()).decode()


def decode_delivery_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    value = raw.removeprefix("delivery:")
    if not raw.startswith("delivery:") or not _DELIVERY_ID.fullmatch(value):
        raise bad_input("after is not a cursor from this connection.", "after")
    return int(value)


def delivery_id_of(value: strawberry.ID) -> int:
    if not _DELIVERY_ID.fullmatch(str(value)):
        raise bad_input("deliveryId is not a webhook delivery id.", "deliveryId")
    return int(str(value))


@strawberry.type
class WebhookQueries:
    @strawberry.field(description="Service token: every webhook endpoint, oldest first.")
    async def webhook_endpoints(self, info: Info) -> list[WebhookEndpoint]:
        info.context.require_service()
        found = await or_error(webhooks.list_endpoints(info.context.services))
        return [WebhookEndpoint.from_domain(e) for e in found]

    @strawberry.field(description="Service token: an endpoint's deliveries, newest first.")
    async def webhook_deliveries(
        self,
        info: Info,
        endpoint_id: strawberry.ID,
        first: int | None = 20,
        after: str | None = None,
        status: WebhookDeliveryStatus | None = None,
    ) -> Connection[WebhookDelivery]:
        info.context.require_service()
        size = page_size(first, info.context.lists)
        page = await or_error(
            webhooks.deliveries_page(
                str(endpoint_id),
                size,
                decode_delivery_cursor(after),
                status.value if status else None,
                info.context.services,
            )
        )
        return connection(
            page.items,
            page.has_next_page,
            WebhookDelivery.from_domain,
            lambda d: delivery_cursor(d.id),
        )


@strawberry.type
class WebhookMutations:
    @strawberry.mutation(
        description="Service token: a new endpoint; the result carries its signing secret, "
        "shown this once. A refused URL: BAD_USER_INPUT with field url."
    )
    async def create_webhook_endpoint(
        self, info: Info, input: CreateWebhookEndpointInput
    ) -> WebhookEndpointWithSecret:
        info.context.require_service()
        call = webhooks.create_endpoint(
            input.url, list(input.event_types), input.description, info.context.services
        )
        return WebhookEndpointWithSecret.from_domain(await or_error(call))

    @strawberry.mutation(description="Service token: change what is given.")
    async def update_webhook_endpoint(
        self, info: Info, input: UpdateWebhookEndpointInput
    ) -> WebhookEndpoint:
        info.context.require_service()
        call = webhooks.update_endpoint(
            str(input.id),
            info.context.services,
            url=input.url,
            event_types=list(input.event_types) if input.event_types is not None else None,
            description=input.description,
            enabled=input.enabled,
        )
        return WebhookEndpoint.from_domain(await or_error(call))

    @strawberry.mutation(description="Service token: the endpoint and its deliveries; its id.")
    async def delete_webhook_endpoint(self, info: Info, id: strawberry.ID) -> strawberry.ID:
        info.context.require_service()
        deleted = await or_error(webhooks.delete_endpoint(str(id), info.context.services))
        return strawberry.ID(deleted)

    @strawberry.mutation(
        description="Service token: a new signing secret (shown this once); the old one keeps "
        "signing beside it for 24 hours, so receivers can switch without losing events."
    )
    async def rotate_webhook_secret(
        self, info: Info, id: strawberry.ID
    ) -> WebhookEndpointWithSecret:
        info.context.require_service()
        call = webhooks.rotate_secret(str(id), info.context.services)
        return WebhookEndpointWithSecret.from_domain(await or_error(call))

    @strawberry.mutation(
        description="Service token: send a delivery's event again, as a new delivery due now "
        "(same webhook-id)."
    )
    async def redeliver_webhook(self, info: Info, delivery_id: strawberry.ID) -> WebhookDelivery:
        info.context.require_service()
        call = webhooks.redeliver(delivery_id_of(delivery_id), info.context.services)
        return WebhookDelivery.from_domain(await or_error(call))
