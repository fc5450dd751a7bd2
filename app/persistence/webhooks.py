"""Webhook endpoints and deliveries: thin reads and writes, never a commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, exists, func, or_
from sqlalchemy.orm import aliased
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.persistence.outbox import DELIVERED, FAILED, PENDING
from app.persistence.tables import WebhookDeliveryRow, WebhookEndpointRow, WebhookEventRow


class WebhookRepository:
    def __init__(self, session: AsyncSession, *, row_locks: bool) -> None:
        self._session = session
        self._row_locks = row_locks

    def add_endpoint(self, row: WebhookEndpointRow) -> None:
        self._session.add(row)

    async def endpoint(self, endpoint_id: str) -> WebhookEndpointRow | None:
        return await self._session.get(WebhookEndpointRow, endpoint_id)

    async def endpoints(self) -> list[WebhookEndpointRow]:
        query = select(WebhookEndpointRow).order_by(
            col(WebhookEndpointRow.created_at), col(WebhookEndpointRow.id)
        )
        return list((await self._session.exec(query)).all())

    async def endpoints_by_id(self, ids: Sequence[str]) -> dict[str, WebhookEndpointRow]:
        query = select(WebhookEndpointRow).where(col(WebhookEndpointRow.id).in_(list(ids)))
        return {row.id: row for row in (await self._session.exec(query)).all()}

    async def delete_endpoint(self, endpoint_id: str) -> None:
        await self._session.exec(
            delete(WebhookDeliveryRow).where(col(WebhookDeliveryRow.endpoint_id) == endpoint_id)
        )
        await self._session.exec(
            delete(WebhookEndpointRow).where(col(WebhookEndpointRow.id) == endpoint_id)
        )

    def add_delivery(self, row: WebhookDeliveryRow) -> None:
        self._session.add(row)

    async def delivery(self, delivery_id: int) -> WebhookDeliveryRow | None:
        return await self._session.get(WebhookDeliveryRow, delivery_id)

    async def events(self, ids: Sequence[str]) -> dict[str, WebhookEventRow]:
        query = select(WebhookEventRow).where(col(WebhookEventRow.id).in_(list(ids)))
        return {row.id: row for row in (await self._session.exec(query)).all()}

    async def claim_due(
        self, now: datetime, limit: int, *, skip_endpoints: Sequence[str] = ()
    ) -> list[WebhookDeliveryRow]:
        """Deliveries due now, none behind an earlier pending one of the same account and
        endpoint (delivery in order per account), to enabled endpoints, oldest first.

        ``FOR UPDATE SKIP LOCKED`` on PostgreSQL: workers in other processes skip the rows
        this one is claiming; SQLite's single writer (BEGIN IMMEDIATE) gives the same.
        """
        d = WebhookDeliveryRow
        earlier = aliased(WebhookDeliveryRow)
        blocked = exists().where(
            and_(
                col(earlier.endpoint_id) == col(d.endpoint_id),
                col(earlier.account_id) == col(d.account_id),
                col(earlier.id) < col(d.id),
                col(earlier.status) == PENDING,
            )
        )
        query = (
            select(d)
            .join(WebhookEndpointRow, col(WebhookEndpointRow.id) == col(d.endpoint_id))
            .where(
                d.status == PENDING,
                col(d.next_attempt_at) <= now,
                or_(col(d.leased_until).is_(None), col(d.leased_until) <= now),
                col(WebhookEndpointRow.enabled).is_(True),
                ~blocked,
            )
        )
        if skip_endpoints:
            query = query.where(col(d.endpoint_id).not_in(list(skip_endpoints)))
        query = query.order_by(col(d.next_attempt_at), col(d.id)).limit(limit)
        if self._row_locks:
            query = query.with_for_update(skip_locked=True, of=d)
        return list((await self._session.exec(query)).all())

    async def any_due(self, now: datetime) -> bool:
        """Whether a claim could find anything (a read: an idle worker takes no write lock)."""
        d = WebhookDeliveryRow
        query = (
            select(d.id)
            .where(
                d.status == PENDING,
                col(d.next_attempt_at) <= now,
                or_(col(d.leased_until).is_(None), col(d.leased_until) <= now),
            )
            .limit(1)
        )
        return (await self._session.exec(query)).first() is not None

    async def lock_delivery(self, delivery_id: int) -> WebhookDeliveryRow | None:
        query = select(WebhookDeliveryRow).where(col(WebhookDeliveryRow.id) == delivery_id)
        if self._row_locks:
            query = query.with_for_update()
        return (await self._session.exec(query)).first()

    async def lock_endpoint(self, endpoint_id: str) -> WebhookEndpointRow | None:
        query = select(WebhookEndpointRow).where(col(WebhookEndpointRow.id) == endpoint_id)
        if self._row_locks:
            # FOR NO KEY UPDATE: writes inserting deliveries (their foreign key takes KEY
            # SHARE on the endpoint) are not held up by it.
            query = query.with_for_update(key_share=True)
        # As it is once locked, even if this session read it before (another worker may
        # have disabled it meanwhile).
        query = query.execution_options(populate_existing=True)
        return (await self._session.exec(query)).first()

    async def deliveries_page(
        self, endpoint_id: str, *, status: str | None, before_id: int | None, limit: int
    ) -> list[WebhookDeliveryRow]:
        """Newest first, keyset-paginated on the delivery id."""
        query = select(WebhookDeliveryRow).where(WebhookDeliveryRow.endpoint_id == endpoint_id)
        if status is not None:
            query = query.where(WebhookDeliveryRow.status == status)
        if before_id is not None:
            query = query.where(col(WebhookDeliveryRow.id) < before_id)
        query = query.order_by(col(WebhookDeliveryRow.id).desc()).limit(limit)
        return list((await self._session.exec(query)).all())

    async def queue_depth(self, now: datetime) -> tuple[int, datetime | None]:
        """Deliveries pending, and when the oldest of them was created (its event's commit)."""
        query = select(func.count(), func.min(WebhookDeliveryRow.created_at)).where(
            WebhookDeliveryRow.status == PENDING
        )
        count, oldest = (await self._session.exec(query)).one()
        return int(count), oldest


__all__ = ["DELIVERED", "FAILED", "PENDING", "WebhookRepository"]
