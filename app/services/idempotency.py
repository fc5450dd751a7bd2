"""Remembering idempotency keys, inside the same transaction as the write they guard."""

from __future__ import annotations

from datetime import datetime

from app.domain.idempotency import check_retry
from app.persistence.tables import IdempotencyRow
from app.persistence.unit_of_work import UnitOfWork


async def replayed_result(
    uow: UnitOfWork, account_id: str, key: str, fingerprint: str
) -> str | None:
    """The id of the first result under ``key``, or None for a new request.

    Called with the account locked, so two retries racing each other see one another.
    """
    record = await uow.idempotency.get(account_id, key)
    if record is None:
        return None
    # The operation is part of the fingerprint: one key can't serve two mutations.
    check_retry(key, record.fingerprint, fingerprint)
    return record.result_id


def remember(
    uow: UnitOfWork,
    account_id: str,
    key: str,
    operation: str,
    fingerprint: str,
    result_id: str,
    now: datetime,
) -> None:
    uow.idempotency.add(
        IdempotencyRow(
            account_id=account_id,
            key=key,
            operation=operation,
            fingerprint=fingerprint,
            result_id=result_id,
            created_at=now,
        )
    )
