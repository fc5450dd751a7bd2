"""Thin repositories over one session. They never commit: the unit of work does."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import and_, or_, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from app.domain.aggregate import WritePlan
from app.persistence.tables import (
    AccountRow,
    CreditAdjustmentRow,
    CreditPackRow,
    GenerationRow,
    HoldRow,
    IdempotencyRow,
    LedgerEntryRow,
    PackPurchaseRow,
    PaymentEventRow,
    PurchaseReversalRow,
    SubscriptionRow,
    TariffRow,
)


class AccountRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def lock(self, account_id: str) -> AccountRow | None:
        """The account row, locked for this transaction.

        Every balance change locks exactly one account row first, so concurrent writers to
        one account queue here and no two ever interleave (the UPDATE's row lock on
        PostgreSQL; on SQLite the transaction already holds the database's write lock,
        BEGIN IMMEDIATE).

        The lock moves the row's version (a run written without the lock checks it,
        plans.py), as the lane's lock does: one UPDATE, its row returned.
        """
        moved = (
            update(AccountRow)
            .where(col(AccountRow.id) == account_id)
            .values(version=col(AccountRow.version) + 1)
            .returning(AccountRow)
            .execution_options(populate_existing=True, synchronize_session=False)
        )
        return (await self._session.exec(moved)).scalars().first()

    async def with_subscriptions(
        self, account_ids: Sequence[str]
    ) -> list[tuple[AccountRow, SubscriptionRow | None]]:
        """Accounts and their current subscriptions in one statement, for any number of ids."""
        query = (
            select(AccountRow, SubscriptionRow)
            .outerjoin(SubscriptionRow, col(SubscriptionRow.id) == col(AccountRow.subscription_id))
            .where(col(AccountRow.id).in_(list(account_ids)))
        )
        return list((await self._session.exec(query)).all())

    async def due_for_renewal(self, now: datetime, limit: int) -> list[str]:
        """Accounts whose cycle has ended but whose ledger does not say so yet."""
        query = (
            select(AccountRow.id)
            .where(col(AccountRow.cycle_ends_at) <= now)
            .order_by(col(AccountRow.cycle_ends_at))
            .limit(limit)
        )
        return list((await self._session.exec(query)).all())

    async def with_bonus_expired(self, now: datetime, limit: int) -> list[str]:
        """Accounts holding bonus credits past their expiry that the ledger does not show."""
        query = (
            select(CreditAdjustmentRow.account_id)
            .where(
                col(CreditAdjustmentRow.remaining) > 0,
                col(CreditAdjustmentRow.expires_at) <= now,
            )
            .distinct()
            .limit(limit)
        )
        return list((await self._session.exec(query)).all())

    async def get(self, account_id: str) -> AccountRow | None:
        return await self._session.get(AccountRow, account_id)

    async def email_exists(self, email: str) -> bool:
        query = select(AccountRow.id).where(AccountRow.email == email)
        return (await self._session.exec(query)).first() is not None

    def add(self, account: AccountRow) -> None:
        self._session.add(account)


class SubscriptionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, subscription_id: str) -> SubscriptionRow | None:
        return await self._session.get(SubscriptionRow, subscription_id)

    def add(self, subscription: SubscriptionRow) -> None:
        self._session.add(subscription)


class CatalogRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def tariffs(self) -> list[TariffRow]:
        return list((await self._session.exec(select(TariffRow))).all())

    async def tariff(self, tool: str) -> TariffRow | None:
        return await self._session.get(TariffRow, tool)

    async def packs(self) -> list[CreditPackRow]:
        query = (
            select(CreditPackRow)
            .where(col(CreditPackRow.on_sale).is_(True))
            .order_by(col(CreditPackRow.position), col(CreditPackRow.id))
        )
        return list((await self._session.exec(query)).all())

    async def pack(self, pack_id: str) -> CreditPackRow | None:
        return await self._session.get(CreditPackRow, pack_id)

    async def pack_of_store_product(self, store: str, product_id: str) -> CreditPackRow | None:
        """The pack a store's product id stands for (the catalog's column for that store)."""
        column = (
            CreditPackRow.app_store_product_id
            if store == "APP_STORE"
            else CreditPackRow.google_play_product_id
        )
        query = select(CreditPackRow).where(column == product_id)
        return (await self._session.exec(query)).first()


class AdjustmentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, adjustment_id: str) -> CreditAdjustmentRow | None:
        return await self._session.get(CreditAdjustmentRow, adjustment_id)

    async def bonus_with_credits_left(self, account_id: str) -> list[CreditAdjustmentRow]:
        """The account's bonus lots with credits left, in spend order."""
        query = (
            select(CreditAdjustmentRow)
            .where(
                CreditAdjustmentRow.account_id == account_id,
                col(CreditAdjustmentRow.remaining) > 0,
                col(CreditAdjustmentRow.expires_at).is_not(None),
            )
            .order_by(
                col(CreditAdjustmentRow.expires_at),
                col(CreditAdjustmentRow.created_at),
                col(CreditAdjustmentRow.id),
            )
        )
        return list((await self._session.exec(query)).all())


class PackPurchaseRepository:
    def __init__(self, session: AsyncSession, *, row_locks: bool = False) -> None:
        self._session = session
        self._row_locks = row_locks

    async def with_credits_left(self, account_id: str) -> list[PackPurchaseRow]:
        # In spend order, so expiries and spends are written in the same order on every backend.
        query = (
            select(PackPurchaseRow)
            .where(PackPurchaseRow.account_id == account_id, col(PackPurchaseRow.remaining) > 0)
            .order_by(
                col(PackPurchaseRow.expires_at),
                col(PackPurchaseRow.purchased_at),
                col(PackPurchaseRow.id),
            )
        )
        return list((await self._session.exec(query)).all())

    async def unexpired(self, account_id: str, now: datetime) -> list[PackPurchaseRow]:
        """Lots with credits left or not yet past their expiry (held credits may come back)."""
        query = (
            select(PackPurchaseRow)
            .where(
                PackPurchaseRow.account_id == account_id,
                or_(col(PackPurchaseRow.remaining) > 0, col(PackPurchaseRow.expires_at) > now),
            )
            .order_by(col(PackPurchaseRow.expires_at), col(PackPurchaseRow.purchased_at))
        )
        return list((await self._session.exec(query)).all())

    async def get(self, purchase_id: str) -> PackPurchaseRow | None:
        return await self._session.get(PackPurchaseRow, purchase_id)

    async def by_ids(self, purchase_ids: Sequence[str]) -> dict[str, PackPurchaseRow]:
        if not purchase_ids:
            return {}
        query = select(PackPurchaseRow).where(col(PackPurchaseRow.id).in_(list(purchase_ids)))
        return {row.id: row for row in (await self._session.exec(query)).all()}

    def add(self, purchase: PackPurchaseRow) -> None:
        self._session.add(purchase)

    async def lock(self, purchase_id: str) -> PackPurchaseRow | None:
        """Locked after its account's row, re-read so a status seen earlier is not trusted."""
        query = (
            select(PackPurchaseRow)
            .where(PackPurchaseRow.id == purchase_id)
            .execution_options(populate_existing=True)
        )
        if self._row_locks:
            query = query.with_for_update()
        return (await self._session.exec(query)).first()

    def written(self, row: PackPurchaseRow, plan: WritePlan) -> None:
        """What ``plan``'s settlement wrote of the purchase, on its row as already stored
        (so the session does not write it a second time)."""
        change = plan.purchase_change
        assert change is not None and change.id == row.id
        values: dict[str, Any] = {
            "status": change.status.value,
            "status_reason": change.reason,
            "checkout_session_id": row.checkout_session_id or change.session_id,
            "payment_reference": change.payment_reference,
        }
        if (granted := plan.granted_lot()) is not None:
            values |= {
                "remaining": granted.remaining,
                "expires_at": granted.expires_at,
                "purchased_at": plan.now,
                "fulfilled_at": plan.now,
            }
        for name, value in values.items():
            set_committed_value(row, name, value)

    async def note_checkout(self, purchase_id: str, session_id: str, url: str | None) -> None:
        """Record the checkout once; a second caller (a retry) leaves the first in place."""
        await self._session.exec(
            update(PackPurchaseRow)
            .where(col(PackPurchaseRow.id) == purchase_id)
            .where(col(PackPurchaseRow.checkout_session_id).is_(None))
            .values(checkout_session_id=session_id, checkout_url=url)
            .execution_options(synchronize_session=False)
        )

    async def by_session(self, provider: str, session_id: str) -> PackPurchaseRow | None:
        query = select(PackPurchaseRow).where(
            PackPurchaseRow.provider == provider, PackPurchaseRow.checkout_session_id == session_id
        )
        return (await self._session.exec(query)).first()

    async def by_payment(self, provider: str, payment_reference: str) -> PackPurchaseRow | None:
        query = select(PackPurchaseRow).where(
            PackPurchaseRow.provider == provider,
            PackPurchaseRow.payment_reference == payment_reference,
        )
        return (await self._session.exec(query)).first()

    async def note_store_finished(self, purchase_id: str, now: datetime) -> None:
        await self._session.exec(
            update(PackPurchaseRow)
            .where(col(PackPurchaseRow.id) == purchase_id)
            .where(col(PackPurchaseRow.store_finished_at).is_(None))
            .values(store_finished_at=now)
            .execution_options(synchronize_session=False)
        )

    async def store_unfinished(self, provider: str, limit: int) -> list[PackPurchaseRow]:
        """Credited store purchases the store was not yet told were delivered."""
        query = (
            select(PackPurchaseRow)
            .where(
                PackPurchaseRow.provider == provider,
                col(PackPurchaseRow.store_finished_at).is_(None),
                col(PackPurchaseRow.fulfilled_at).is_not(None),
            )
            .order_by(col(PackPurchaseRow.created_at), col(PackPurchaseRow.id))
            .limit(limit)
        )
        return list((await self._session.exec(query)).all())

    async def needing_reconciliation(
        self, pending_before: datetime, limit: int
    ) -> list[PackPurchaseRow]:
        """Purchases PENDING since before ``pending_before``, and every pending refund."""
        query = (
            select(PackPurchaseRow)
            .where(
                or_(
                    and_(
                        col(PackPurchaseRow.status) == "PENDING",
                        col(PackPurchaseRow.created_at) <= pending_before,
                    ),
                    col(PackPurchaseRow.status) == "REFUND_PENDING",
                )
            )
            .order_by(col(PackPurchaseRow.created_at), col(PackPurchaseRow.id))
            .limit(limit)
        )
        return list((await self._session.exec(query)).all())

    async def page(
        self, account_id: str, *, before: tuple[datetime, str] | None, limit: int
    ) -> list[PackPurchaseRow]:
        """Newest first, keyset-paginated on (created_at, id)."""
        query = select(PackPurchaseRow).where(PackPurchaseRow.account_id == account_id)
        query = _newest_first(query, PackPurchaseRow, before, limit)
        return list((await self._session.exec(query)).all())


class PaymentEventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def seen(self, provider: str, event_id: str) -> bool:
        return await self._session.get(PaymentEventRow, (provider, event_id)) is not None

    def add(self, event: PaymentEventRow) -> None:
        self._session.add(event)


class ReversalRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, provider: str, reversal_id: str) -> PurchaseReversalRow | None:
        return await self._session.get(PurchaseReversalRow, (provider, reversal_id))

    def add(self, reversal: PurchaseReversalRow) -> None:
        self._session.add(reversal)


class GenerationRepository:
    def __init__(self, session: AsyncSession, *, row_locks: bool) -> None:
        self._session = session
        self._row_locks = row_locks

    async def get(self, generation_id: str) -> GenerationRow | None:
        return await self._session.get(GenerationRow, generation_id)

    async def lock(self, generation_id: str) -> GenerationRow | None:
        """Locked after its account's row: every writer takes account, then generation."""
        query = (
            select(GenerationRow)
            .where(GenerationRow.id == generation_id)
            .execution_options(populate_existing=True)
        )
        if self._row_locks:
            query = query.with_for_update()
        return (await self._session.exec(query)).first()

    async def claim_queued(self, tools: Sequence[str] | None, limit: int) -> list[GenerationRow]:
        """The oldest queued jobs that no other worker is claiming right now.

        ``FOR UPDATE SKIP LOCKED`` on PostgreSQL hands each row to one transaction only;
        SQLite's single writer (BEGIN IMMEDIATE) gives the same guarantee.
        """
        query = select(GenerationRow).where(GenerationRow.status == "QUEUED")
        if tools is not None:
            query = query.where(col(GenerationRow.tool).in_(list(tools)))
        query = query.order_by(col(GenerationRow.created_at), col(GenerationRow.id)).limit(limit)
        if self._row_locks:
            query = query.with_for_update(skip_locked=True)
        return list((await self._session.exec(query)).all())

    async def count_active(self, account_id: str) -> int:
        """The account's generations QUEUED or RUNNING: what the plan's cap counts."""
        query = (
            select(func.count())
            .select_from(GenerationRow)
            .where(
                GenerationRow.account_id == account_id,
                col(GenerationRow.status).in_(["QUEUED", "RUNNING"]),
            )
        )
        return int((await self._session.exec(query)).one())

    async def unfinished_since(
        self, queued_before: datetime, started_before: datetime, limit: int
    ) -> list[GenerationRow]:
        """Candidates for the timeout: queued or running for longer than allowed."""
        query = (
            select(GenerationRow)
            .where(
                or_(
                    and_(
                        col(GenerationRow.status) == "QUEUED",
                        col(GenerationRow.created_at) <= queued_before,
                    ),
                    and_(
                        col(GenerationRow.status) == "RUNNING",
                        col(GenerationRow.started_at) <= started_before,
                    ),
                )
            )
            .order_by(col(GenerationRow.created_at), col(GenerationRow.id))
            .limit(limit)
        )
        return list((await self._session.exec(query)).all())

    async def page(
        self,
        account_id: str,
        *,
        status: str | None,
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> list[GenerationRow]:
        """Newest first, keyset-paginated on (created_at, id)."""
        query = select(GenerationRow).where(GenerationRow.account_id == account_id)
        if status is not None:
            query = query.where(GenerationRow.status == status)
        query = _newest_first(query, GenerationRow, before, limit)
        return list((await self._session.exec(query)).all())

    def add(self, generation: GenerationRow) -> None:
        self._session.add(generation)


class HoldRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def open_for(self, generation_id: str) -> list[HoldRow]:
        query = (
            select(HoldRow)
            .where(HoldRow.generation_id == generation_id, HoldRow.status == "OPEN")
            .order_by(col(HoldRow.id))
        )
        return list((await self._session.exec(query)).all())

    def add(self, hold: HoldRow) -> None:
        self._session.add(hold)

    async def count_open(self) -> int:
        """Open holds of every account, for metrics."""
        query = select(func.count()).select_from(HoldRow).where(HoldRow.status == "OPEN")
        return int((await self._session.exec(query)).one())


class LedgerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    def add(self, entry: LedgerEntryRow) -> None:
        self._session.add(entry)

    async def page(
        self, account_id: str, *, before_id: int | None, limit: int
    ) -> list[LedgerEntryRow]:
        """Newest first, keyset-paginated on the entry id."""
        query = select(LedgerEntryRow).where(LedgerEntryRow.account_id == account_id)
        if before_id is not None:
            query = query.where(col(LedgerEntryRow.id) < before_id)
        query = query.order_by(col(LedgerEntryRow.id).desc()).limit(limit)
        return list((await self._session.exec(query)).all())


class IdempotencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, account_id: str, key: str) -> IdempotencyRow | None:
        return await self._session.get(IdempotencyRow, (account_id, key))

    def add(self, record: IdempotencyRow) -> None:
        self._session.add(record)


_Page = TypeVar("_Page", bound=SelectOfScalar[Any])


def _newest_first(
    query: _Page,
    table: type[PackPurchaseRow] | type[GenerationRow],
    before: tuple[datetime, str] | None,
    limit: int,
) -> _Page:
    """One page of a keyset pagination on (created_at, id), newest first: the rows strictly
    after the cursor ``before``, so a page stays right while new rows arrive."""
    if before is not None:
        created_at, row_id = before
        query = query.where(
            or_(
                col(table.created_at) < created_at,
                and_(col(table.created_at) == created_at, col(table.id) < row_id),
            )
        )
    return query.order_by(col(table.created_at).desc(), col(table.id).desc()).limit(limit)
