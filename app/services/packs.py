"""Buying credit packs: a purchase is paid for first, and credited once the money is in.

``purchase_pack`` commits a PENDING purchase (price copied from the catalog), then asks
the provider for a checkout, so a webhook that arrives early finds the row. The credits
move only in :mod:`app.services.fulfilment`, when the provider confirms the payment.
"""

from __future__ import annotations

import uuid

from app.domain.errors import (
    PackNotFound,
    PaymentProviderUnavailable,
    SubscriptionRequired,
)
from app.domain.idempotency import fingerprint, validate_key
from app.domain.purchases import PurchaseStatus
from app.payments.port import CheckoutRequest, ProviderUnavailable
from app.persistence.tables import PackPurchaseRow
from app.services.deps import Services
from app.services.fulfilment import (
    PackPurchased,
    PaymentPending,
    PurchaseClosed,
    PurchaseOutcome,
    fulfil_purchase,
)
from app.services.history import get_purchase
from app.services.idempotency import remember, replayed_result
from app.services.mapping import terms_of
from app.services.wallets import Postings, acting_now, bring_up_to_date, lock_account
from app.services.webhook_events import record_posted

OPERATION = "purchasePack"


async def purchase_pack(
    account_id: str, pack_id: str, idempotency_key: str, services: Services
) -> PurchaseOutcome:
    validate_key(idempotency_key)
    request = fingerprint(OPERATION, pack_id=pack_id)
    async with services.db.writing() as uow:
        account = await lock_account(uow, account_id)
        subscription, now = await acting_now(uow, account, services.clock)
        first = await replayed_result(uow, account_id, idempotency_key, request)
        if first is not None:
            row = await uow.purchases.get(first)
            assert row is not None
        else:
            pack = await uow.catalog.pack(pack_id)
            if pack is None or not pack.on_sale:
                raise PackNotFound(pack_id)
            postings = Postings(uow, account, now)
            await bring_up_to_date(uow, account, subscription, postings, now)
            terms = terms_of(subscription)
            if terms is None or not terms.allows_packs_at(now):
                raise SubscriptionRequired()
            row = PackPurchaseRow(
                id=str(uuid.uuid4()),
                account_id=account.id,
                pack_id=pack.id,
                credits=pack.credits,
                remaining=0,
                price_cents=pack.price_cents,
                currency=pack.currency,
                status=PurchaseStatus.PENDING.value,
                provider=services.payments.name.value,
                created_at=now,
            )
            uow.purchases.add(row)
            remember(uow, account_id, idempotency_key, OPERATION, request, row.id, now)
            await record_posted(uow, postings, subscription, services)
            await uow.commit()
    if row.status == PurchaseStatus.PENDING and row.checkout_session_id is None:
        try:
            await open_checkout(row, services)
        except ProviderUnavailable:
            # The purchase stays PENDING with no checkout: a retry with the key (or the
            # reconciliation) asks again, and the provider's idempotency gives one checkout.
            raise PaymentProviderUnavailable() from None
    return await fulfil_purchase(row.id, services)


async def open_checkout(row: PackPurchaseRow, services: Services) -> None:
    """Ask the provider for the purchase's checkout and note it on the purchase, once."""
    checkout = await services.payments.create_checkout(
        CheckoutRequest(
            purchase_id=row.id,
            account_id=row.account_id,
            pack_id=row.pack_id,
            credits=row.credits,
            amount_cents=row.price_cents,
            currency=row.currency,
        )
    )
    async with services.db.writing() as uow:
        await uow.purchases.note_checkout(row.id, checkout.session_id, checkout.url)
        await uow.commit()
    row.checkout_session_id, row.checkout_url = checkout.session_id, checkout.url


async def confirm_pack_purchase(
    purchase_id: str, account_id: str | None, services: Services
) -> PurchaseOutcome:
    """The client is back from checkout: ask the provider now instead of waiting."""
    await get_purchase(purchase_id, account_id, services)  # another user's: not found
    return await fulfil_purchase(purchase_id, services)


__all__ = ["PackPurchased", "PaymentPending", "PurchaseClosed", "purchase_pack"]
