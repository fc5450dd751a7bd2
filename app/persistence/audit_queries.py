"""Aggregates for the audit: one grouped query per table, whatever the number of accounts."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.audit import AccountFacts, BonusLotFacts, GenerationFacts, LotFacts
from app.domain.holds import RecordedCycle
from app.domain.purchase_audit import PurchaseFacts
from app.persistence.tables import (
    AccountRow,
    CreditAdjustmentRow,
    GenerationRow,
    HoldRow,
    LedgerEntryRow,
    PackPurchaseRow,
    SubscriptionRow,
)


async def snapshot_isolation(session: AsyncSession) -> None:
    """One consistent snapshot for every query of the audit, while writers go on."""
    if session.bind.dialect.name == "postgresql":  # type: ignore[union-attr]
        await session.connection(
            execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        )


async def _grouped(session: AsyncSession, query: Any) -> list[Any]:
    return list((await session.exec(query)).all())


async def account_facts(session: AsyncSession) -> list[AccountFacts]:
    ledger = await _grouped(
        session,
        select(
            LedgerEntryRow.account_id, LedgerEntryRow.bucket, func.sum(LedgerEntryRow.amount)
        ).group_by(col(LedgerEntryRow.account_id), col(LedgerEntryRow.bucket)),
    )
    sums: dict[tuple[str, str], int] = {(a, b): int(t) for a, b, t in ledger}
    lots = await _grouped(
        session,
        select(PackPurchaseRow.account_id, func.sum(PackPurchaseRow.remaining)).group_by(
            col(PackPurchaseRow.account_id)
        ),
    )
    remaining = {a: int(t) for a, t in lots}
    bonus = await _grouped(
        session,
        select(CreditAdjustmentRow.account_id, func.sum(CreditAdjustmentRow.remaining)).group_by(
            col(CreditAdjustmentRow.account_id)
        ),
    )
    bonus_remaining = {a: int(t) for a, t in bonus}
    accounts = (await session.exec(select(AccountRow))).all()
    return [
        AccountFacts(
            account_id=a.id,
            subscription_balance=a.subscription_balance,
            pack_balance=a.pack_balance,
            ledger_subscription=sums.get((a.id, "SUBSCRIPTION"), 0),
            ledger_pack=sums.get((a.id, "PACK"), 0),
            lots_remaining=remaining.get(a.id, 0),
            cycle_index=a.cycle_index,
            cycle_ends_at=a.cycle_ends_at,
            subscription_id=a.subscription_id,
            bonus_balance=a.bonus_balance,
            ledger_bonus=sums.get((a.id, "BONUS"), 0),
            bonus_remaining=bonus_remaining.get(a.id, 0),
        )
        for a in accounts
    ]


async def bonus_lot_facts(session: AsyncSession) -> list[BonusLotFacts]:
    """Every adjustment with the sum of the BONUS entries naming it as their lot."""
    ledger = await _grouped(
        session,
        select(LedgerEntryRow.lot_id, func.sum(LedgerEntryRow.amount))
        .where(col(LedgerEntryRow.bucket) == "BONUS")
        .group_by(col(LedgerEntryRow.lot_id)),
    )
    totals = {lot: int(t) for lot, t in ledger}
    rows = (await session.exec(select(CreditAdjustmentRow))).all()
    return [
        BonusLotFacts(
            r.id,
            r.account_id,
            r.amount,
            r.remaining,
            totals.get(r.id, 0),
            expires_at=r.expires_at,
        )
        for r in rows
    ]


async def current_subscriptions(session: AsyncSession) -> dict[str, SubscriptionRow]:
    """Each account's current subscription, by account id."""
    rows = await _grouped(
        session,
        select(AccountRow.id, SubscriptionRow).join(
            SubscriptionRow, col(AccountRow.subscription_id) == col(SubscriptionRow.id)
        ),
    )
    return {account_id: row for account_id, row in rows}


async def lot_facts(session: AsyncSession) -> list[LotFacts]:
    ledger = await _grouped(
        session,
        select(LedgerEntryRow.lot_id, func.sum(LedgerEntryRow.amount))
        .where(col(LedgerEntryRow.lot_id).is_not(None))
        .group_by(col(LedgerEntryRow.lot_id)),
    )
    totals = {lot: int(t) for lot, t in ledger}
    lots = await _grouped(
        session,
        select(
            PackPurchaseRow,
            AccountRow.subscription_id,
            AccountRow.cycle_index,
            AccountRow.cycle_ends_at,
        ).join(AccountRow, col(AccountRow.id) == col(PackPurchaseRow.account_id)),
    )
    return [
        LotFacts(
            p.id,
            p.account_id,
            p.remaining,
            totals.get(p.id, 0),
            expires_at=p.expires_at,
            account_cycle=RecordedCycle(subscription_id, cycle_index, cycle_ends_at),
        )
        for p, subscription_id, cycle_index, cycle_ends_at in lots
    ]


async def generation_facts(session: AsyncSession) -> list[GenerationFacts]:
    holds = await _grouped(
        session,
        select(HoldRow.generation_id, HoldRow.status, func.sum(HoldRow.amount)).group_by(
            col(HoldRow.generation_id), col(HoldRow.status)
        ),
    )
    by_generation: dict[str, dict[str, int]] = defaultdict(dict)
    for generation_id, status, total in holds:
        by_generation[generation_id][status] = int(total)
    entries = await _grouped(
        session,
        select(LedgerEntryRow.reference_id, LedgerEntryRow.kind, func.sum(LedgerEntryRow.amount))
        .where(LedgerEntryRow.reference_type == "GENERATION")
        .where(col(LedgerEntryRow.kind).in_(["SPEND", "REFUND"]))
        .group_by(col(LedgerEntryRow.reference_id), col(LedgerEntryRow.kind)),
    )
    moved: dict[tuple[str, str], int] = {(r, k): int(t) for r, k, t in entries}
    generations = (await session.exec(select(GenerationRow))).all()
    return [
        GenerationFacts(
            generation_id=g.id,
            account_id=g.account_id,
            status=g.status,
            cost=g.cost,
            holds_by_status=by_generation.get(g.id, {}),
            spent=moved.get((g.id, "SPEND"), 0),
            refunded=moved.get((g.id, "REFUND"), 0),
        )
        for g in generations
    ]


async def ledger_entry_count(session: AsyncSession) -> int:
    return int((await session.exec(select(func.count()).select_from(LedgerEntryRow))).one())


async def purchase_facts(session: AsyncSession) -> list[PurchaseFacts]:
    entries = await _grouped(
        session,
        select(  # type: ignore[call-overload]  # sqlmodel types select() up to four columns
            LedgerEntryRow.lot_id,
            LedgerEntryRow.kind,
            LedgerEntryRow.reference_type,
            func.count(),
            func.sum(LedgerEntryRow.amount),
        )
        .where(col(LedgerEntryRow.lot_id).is_not(None))
        .group_by(
            col(LedgerEntryRow.lot_id), col(LedgerEntryRow.kind), col(LedgerEntryRow.reference_type)
        ),
    )
    counts: dict[tuple[str, str, str], tuple[int, int]] = {
        (lot, kind, ref): (int(n), int(total)) for lot, kind, ref, n, total in entries
    }
    per_lot: dict[str, int] = defaultdict(int)
    for (lot, _, _), (n, _) in counts.items():
        per_lot[lot] += n
    purchases = (await session.exec(select(PackPurchaseRow))).all()
    facts = []
    for p in purchases:
        grants, granted = counts.get((p.id, "GRANT", "PURCHASE"), (0, 0))
        revoked = -counts.get((p.id, "REVOCATION", "REFUND"), (0, 0))[1]
        revoked -= counts.get((p.id, "REVOCATION", "DISPUTE"), (0, 0))[1]
        revoked -= counts.get((p.id, "GRANT", "DISPUTE"), (0, 0))[1]
        # A refund a store reversed gives its credits back the same way.
        revoked -= counts.get((p.id, "GRANT", "REFUND"), (0, 0))[1]
        facts.append(
            PurchaseFacts(
                purchase_id=p.id,
                status=p.status,
                credited=p.fulfilled_at is not None,
                credits=p.credits,
                revoked_credits=p.revoked_credits,
                revocation_target=p.revocation_target,
                grants=grants,
                granted=granted,
                revoked=revoked,
                entries=per_lot.get(p.id, 0),
            )
        )
    return facts


async def shared_payments(session: AsyncSession) -> list[tuple[str, str, int]]:
    rows = await _grouped(
        session,
        select(PackPurchaseRow.provider, PackPurchaseRow.payment_reference, func.count())
        .where(col(PackPurchaseRow.payment_reference).is_not(None))
        .group_by(col(PackPurchaseRow.provider), col(PackPurchaseRow.payment_reference))
        .having(func.count() > 1),
    )
    return [(provider, str(reference), int(n)) for provider, reference, n in rows]
