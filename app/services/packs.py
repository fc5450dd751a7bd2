"""Buying credit packs: granted at once, expiring at the next monthly renewal."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.domain.accounts import AccountView
from app.domain.errors import PackNotFound, SubscriptionRequired
from app.domain.idempotency import fingerprint, validate_key
from app.domain.model import Bucket, LedgerKind
from app.domain.records import PackPurchase
from app.persistence.tables import PackPurchaseRow
from app.services.deps import Services
from app.services.idempotency import remember, replayed_result
from app.services.mapping import purchase_of, terms_of, view_of
from app.services.wallets import Postings, acting_now, bring_up_to_date, lock_account

OPERATION = "purchasePack"


@dataclass(frozen=True, slots=True)
class PackPurchased:
    purchase: PackPurchase
    account: AccountView


async def purchase_pack(
    account_id: str, pack_id: str, idempotency_key: str, services: Services
) -> PackPurchased:
    validate_key(idempotency_key)
    request = fingerprint(OPERATION, pack_id=pack_id)
    async with services.db.writing() as uow:
        account = await lock_account(uow, account_id)
        subscription, now = await acting_now(uow, account, services.clock)
        first = await replayed_result(uow, account_id, idempotency_key, request)
        if first is not None:
            purchase = await uow.purchases.get(first)
            assert purchase is not None
            return PackPurchased(purchase_of(purchase), view_of(account, subscription, now))
        pack = await uow.catalog.pack(pack_id)
        if pack is None:
            raise PackNotFound(pack_id)
        postings = Postings(uow, account, now)
        await bring_up_to_date(uow, account, subscription, postings, now)
        terms = terms_of(subscription)
        if terms is None or not terms.allows_packs_at(now) or account.cycle_ends_at is None:
            raise SubscriptionRequired()
        purchase = PackPurchaseRow(
            id=str(uuid.uuid4()),
            account_id=account.id,
            pack_id=pack.id,
            credits=pack.credits,
            remaining=0,
            price_cents=pack.price_cents,
            currency=pack.currency,
            purchased_at=now,
            expires_at=account.cycle_ends_at,
        )
        uow.purchases.add(purchase)
        postings.post(
            LedgerKind.GRANT,
            Bucket.PACK,
            pack.credits,
            reference_type="PURCHASE",
            reference_id=purchase.id,
            lot=purchase,
        )
        remember(uow, account_id, idempotency_key, OPERATION, request, purchase.id, now)
        await uow.commit()
    return PackPurchased(purchase_of(purchase), view_of(account, subscription, now))
