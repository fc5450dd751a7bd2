"""Provider events and reconciliation: what reaches us about payments, acted on once.

A webhook is verified at the edge; here its id is looked up, what it names is re-read from
the provider, and the same fulfilment and reversal functions as every other path act on
it. The id is stored after the effect committed, so a crash in between means a redelivery
does the (idempotent) work again, never that an event is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

from sqlalchemy.exc import IntegrityError

from app.domain.errors import PurchaseNotFound
from app.domain.purchases import PurchaseStatus
from app.payments.port import EventKind, ProviderEvent, ProviderUnavailable
from app.payments.sandbox import SandboxOutcome, SandboxProvider
from app.persistence.tables import PaymentEventRow
from app.services.deps import Services
from app.services.fulfilment import PurchaseOutcome, fulfil_purchase, outcome_of
from app.services.packs import open_checkout
from app.services.reversals import apply_reversal

log = logging.getLogger("creditgate.payments")


async def handle_event(event: ProviderEvent, services: Services) -> str:
    """Act on a verified provider event once; returns the outcome (for metrics and logs).

    Raises ProviderUnavailable when the provider cannot be asked: the webhook answers 5xx
    so the provider sends the event again.
    """
    return await acted_once(
        services.payments.name.value,
        event.event_id,
        event.event_type,
        event.purchase_id,
        _act(event, services),
        services,
    )


async def acted_once(
    provider: str,
    event_id: str,
    event_type: str,
    purchase_id: str | None,
    act: Coroutine[Any, Any, str],
    services: Services,
) -> str:
    """Run ``act`` for an event unless its id was seen; store the id once it succeeded.

    Every provider's notifications (card webhooks, App Store notifications, Google's RTDN)
    are deduplicated here, by the provider's event id.
    """
    async with services.db.reading() as uow:
        if await uow.payment_events.seen(provider, event_id):
            act.close()
            return "duplicate"
    outcome = await act
    async with services.db.writing() as uow:
        uow.payment_events.add(
            PaymentEventRow(
                provider=provider,
                event_id=event_id,
                event_type=event_type[:64],
                purchase_id=purchase_id,
                outcome=outcome[:32],
                received_at=services.clock.now(),
            )
        )
        try:
            await uow.commit()
        except IntegrityError:
            return "duplicate"  # the same event, delivered twice at once, acted on twice: a no-op
    return outcome


async def _act(event: ProviderEvent, services: Services) -> str:
    if event.kind is EventKind.PAYMENT and event.object_id is not None:
        purchase_id = event.purchase_id or await _purchase_of_session(event.object_id, services)
        if purchase_id is None:
            log.warning("%s %s names no purchase of ours", event.event_type, event.event_id)
            return "unknown_purchase"
        try:
            outcome = await fulfil_purchase(purchase_id, services, session_hint=event.object_id)
        except PurchaseNotFound:
            log.warning("%s %s names no purchase of ours", event.event_type, event.event_id)
            return "unknown_purchase"
        return outcome.purchase.status.lower()
    if event.kind is EventKind.REFUNDS and event.object_id is not None:
        refunds = await services.payments.fetch_refunds(event.object_id)
        outcomes = [await apply_reversal(refund, services) for refund in refunds]
        return "refunded" if "refunded" in outcomes else (outcomes[0] if outcomes else "nothing")
    if event.kind is EventKind.DISPUTE and event.object_id is not None:
        dispute = await services.payments.fetch_dispute(event.object_id)
        return await apply_reversal(dispute, services)
    return "ignored"


async def _purchase_of_session(session_id: str, services: Services) -> str | None:
    async with services.db.reading() as uow:
        row = await uow.purchases.by_session(services.payments.name.value, session_id)
    return row.id if row else None


async def reconcile(services: Services, *, limit: int = 100) -> int:
    """Ask the provider about purchases PENDING too long and refunds not yet confirmed.

    A process killed between the provider call and its commit loses nothing: the purchase
    row exists, and this finishes it. Returns how many purchases changed status.
    """
    now = services.clock.now()
    async with services.db.reading() as uow:
        rows = await uow.purchases.needing_reconciliation(
            now - services.payment_reconcile_after, limit
        )
    changed = 0
    for row in rows:
        try:
            if row.status == PurchaseStatus.PENDING and row.checkout_session_id is None:
                await open_checkout(row, services)
            outcome = await fulfil_purchase(row.id, services)
        except ProviderUnavailable:
            log.warning("reconciliation: provider unavailable for purchase %s", row.id)
            continue
        changed += outcome.purchase.status != row.status
    return changed


async def sandbox_settle(
    purchase_id: str, outcome: SandboxOutcome, services: Services
) -> PurchaseOutcome:
    """Drive a sandbox payment as a real provider's events would, through the same path."""
    sandbox = services.payments
    if not isinstance(sandbox, SandboxProvider):
        raise PurchaseNotFound(purchase_id)
    async with services.db.reading() as uow:
        row = await uow.purchases.get(purchase_id)
    if row is None or row.checkout_session_id is None:
        raise PurchaseNotFound(purchase_id)
    try:
        event = sandbox.settle(row.checkout_session_id, outcome)
    except LookupError:
        raise PurchaseNotFound(purchase_id) from None
    await handle_event(event, services)
    async with services.db.reading() as uow:
        row = await uow.purchases.get(purchase_id)
    assert row is not None
    return await outcome_of(row, services)
