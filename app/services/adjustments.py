"""Credit adjustments by support (service token): a bonus lot, or credits taken back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from app.domain.accounts import AccountView
from app.domain.adjustments import validate_amount, validate_expiry, validate_reason
from app.domain.aggregate import AdjustmentRequest, plan_adjustment
from app.domain.errors import AccountNotFound
from app.domain.idempotency import fingerprint, validate_key
from app.domain.records import CreditAdjustment
from app.services.deps import Services
from app.services.mapping import adjustment_of, view_of_books
from app.services.webhook_events import plan_events

OPERATION = "adjustCredits"


@dataclass(frozen=True, slots=True)
class CreditsAdjusted:
    adjustment: CreditAdjustment
    account: AccountView


async def adjust_credits(
    account_id: str,
    amount: int,
    reason: str,
    idempotency_key: str,
    expires_at: datetime | None,
    actor: str,
    services: Services,
) -> CreditsAdjusted:
    """One adjustment under the account's lock; a retry with the key returns the first.

    ``actor``: who adjusts (the service token's subject), recorded with the reason.
    """
    validate_key(idempotency_key)
    validate_amount(amount)
    validate_reason(reason)
    expiry = validate_expiry(amount, expires_at)
    request = AdjustmentRequest(
        amount=amount,
        reason=reason,
        actor=actor,
        expires_at=expiry,
        key=idempotency_key,
        operation=OPERATION,
        # Who asked is not part of it: a retry from another support seat is still a retry.
        fingerprint=fingerprint(
            OPERATION,
            amount=amount,
            reason=reason,
            expires_at=expiry.isoformat() if expiry else None,
        ),
        adjustment_id=str(uuid.uuid4()),
    )
    async with services.db.writing() as uow:
        account = await uow.lock_account(account_id)
        if account is None:
            raise AccountNotFound(account_id)
        state = await uow.account_state(account, key=idempotency_key)
        plan = plan_adjustment(state, request, services.clock.now())
        if plan.replay_of is not None:
            first = await uow.adjustments.get(plan.replay_of)
            assert first is not None
            return CreditsAdjusted(adjustment_of(first), view_of_books(account, state, plan))
        await uow.write(plan, await plan_events(uow, services, state, plan))
        await uow.commit()
    created = plan.new_adjustment
    assert created is not None
    adjustment = CreditAdjustment(
        id=created.id,
        account_id=account_id,
        amount=created.amount,
        reason=created.reason,
        actor=created.actor,
        created_at=created.created_at,
        expires_at=created.expires_at,
        remaining=max(created.amount, 0),
    )
    return CreditsAdjusted(adjustment, view_of_books(account, state, plan))
