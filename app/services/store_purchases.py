"""Packs bought in the App Store or Google Play: a verified proof credited once, to its owner.

``redeem_store_purchase`` verifies the proof with the store's library (Apple's signature,
Google's API), looks the store's transaction id up (the idempotency key: the same proof
again returns the first purchase; bound to another account, StorePurchaseAlreadyRedeemed),
asks the domain whether it may be credited to this account, and then credits it through
the same settlement as a card payment (``fulfilment.settle_locked``), in one transaction
with the purchase row. Only after that commit is the store told (Google: consume), so a
purchase that was not credited is refunded by the store.

Store notifications (App Store Server Notifications V2, Google's RTDN) and the sweep use
the same functions: a purchase announced by the store is credited to the account its token
names, a refund revokes as a card refund does (``reversals.apply_reversal``).
"""

from __future__ import annotations

import hashlib
import logging
import uuid

from sqlalchemy.exc import IntegrityError

from app.domain.errors import (
    AccountNotFound,
    CreditError,
    PackNotFound,
    PaymentProviderUnavailable,
    StorePurchaseAlreadyRedeemed,
    StorePurchaseInvalid,
    SubscriptionRequired,
)
from app.domain.purchases import PaymentState, ProviderName, PurchaseStatus, Settlement
from app.domain.store_purchases import (
    Store,
    StoreProblem,
    StoreState,
    StoreTransaction,
    judge_transaction,
    refunded_share,
    store_sale,
)
from app.payments.port import (
    NoticeKind,
    Payment,
    ProviderUnavailable,
    Reversal,
    ReversalKind,
    StoreNotice,
    StoreProof,
    StoreProvider,
    VoidedPurchase,
)
from app.persistence.tables import PackPurchaseRow
from app.services.deps import Services
from app.services.fulfilment import PurchaseOutcome, outcome_of, settle_locked
from app.services.mapping import purchase_of
from app.services.payment_events import acted_once
from app.services.reversals import apply_reversal

log = logging.getLogger("creditgate.payments")

PROBLEM_MESSAGES = {
    StoreProblem.WRONG_ACCOUNT: "This purchase was made for another account (appAccountToken "
    "or obfuscatedAccountId must be the account id).",
    StoreProblem.WRONG_PRODUCT: "The purchase is for another product than productId.",
    StoreProblem.NOT_PURCHASED: "The store does not report this purchase as paid (pending, "
    "cancelled or refunded).",
    StoreProblem.ALREADY_CONSUMED: "The store reports this purchase as consumed already.",
    StoreProblem.STORE_UNAVAILABLE: "This gateway does not sell through that store.",
}


def _store(services: Services, store: Store) -> StoreProvider:
    provider = services.stores.get(ProviderName(store.value))
    if provider is None:
        raise StorePurchaseInvalid(
            StoreProblem.STORE_UNAVAILABLE, PROBLEM_MESSAGES[StoreProblem.STORE_UNAVAILABLE]
        )
    return provider


async def redeem_store_purchase(
    account_id: str, proof: StoreProof, services: Services
) -> PurchaseOutcome:
    """Credit a store purchase the app sends, once, to the account it was made for."""
    store = _store(services, proof.store)
    try:
        transaction = await store.verify_purchase(proof)
    except ProviderUnavailable:
        raise PaymentProviderUnavailable() from None
    row = await credit_transaction(account_id, transaction, services, product_id=proof.product_id)
    await finish(row, transaction, store, services)
    return await outcome_of(row, services)


async def credit_transaction(
    account_id: str,
    transaction: StoreTransaction,
    services: Services,
    *,
    product_id: str | None = None,
) -> PackPurchaseRow:
    """The purchase of ``transaction``: the first one made of it, or a new one credited now."""
    provider = transaction.store.value
    first = await _redeemed(provider, transaction, account_id, services)
    if first is not None:
        return first
    problem = judge_transaction(transaction, account_id, product_id=product_id)
    if problem is not None:
        raise StorePurchaseInvalid(problem, PROBLEM_MESSAGES[problem])
    pack_id = services.store_products.get((provider, transaction.product_id))
    try:
        async with services.db.writing() as uow:
            account = await uow.lock_account(account_id)
            if account is None:
                raise AccountNotFound(account_id)
            existing = await uow.purchases.by_payment(provider, transaction.transaction_id)
            if existing is not None:  # redeemed meanwhile (the account lock queued us)
                return _owned(existing, account_id)
            pack = await (
                uow.catalog.pack(pack_id)
                if pack_id
                else uow.catalog.pack_of_store_product(provider, transaction.product_id)
            )
            if pack is None or not pack.on_sale:
                raise PackNotFound(pack_id or transaction.product_id)
            sale = store_sale(pack.credits, pack.price_cents, pack.currency, transaction.quantity)
            now = services.clock.now()
            row = PackPurchaseRow(
                id=str(uuid.uuid4()),
                account_id=account_id,
                pack_id=pack.id,
                credits=sale.credits,
                remaining=0,
                price_cents=sale.price_cents,
                currency=sale.currency,
                status=PurchaseStatus.PENDING.value,
                provider=provider,
                created_at=now,
                quantity=transaction.quantity,
                store_product_id=transaction.product_id,
            )
            uow.purchases.add(row)
            await uow.flush()  # a concurrent redeem by another account stops here
            paid = Payment(
                session_id=transaction.transaction_id,
                state=PaymentState.PAID,
                purchase_id=row.id,
                amount_cents=row.price_cents,
                currency=row.currency,
                payment_reference=transaction.transaction_id,
            )
            state = await uow.account_state(account)
            settled = await settle_locked(
                uow, state, purchase_of(row), paid, services, pack_on_sale=pack.on_sale
            )
            if settled is None or settled.decision.settlement is not Settlement.GRANT:
                # Paid at the store, but packs need an active subscription: nothing is
                # written and (Google) nothing consumed, so the store refunds it.
                raise SubscriptionRequired()
            uow.purchases.written(row, settled.plan)
            if transaction.store is Store.APP_STORE:
                row.store_finished_at = now  # the app finishes it on the device
            await uow.commit()
    except IntegrityError:
        # Another account's redeem of the same proof committed first (the unique index on
        # the provider's payment reference): one grant, and this one is told so.
        first = await _redeemed(provider, transaction, account_id, services)
        if first is None:
            raise
        return first
    return row


async def _redeemed(
    provider: str, transaction: StoreTransaction, account_id: str, services: Services
) -> PackPurchaseRow | None:
    async with services.db.reading() as uow:
        existing = await uow.purchases.by_payment(provider, transaction.transaction_id)
    return _owned(existing, account_id) if existing is not None else None


def _owned(row: PackPurchaseRow, account_id: str) -> PackPurchaseRow:
    if row.account_id != account_id:
        log.warning("store purchase %s replayed by account %s", row.id, account_id)
        raise StorePurchaseAlreadyRedeemed()
    return row


async def finish(
    row: PackPurchaseRow, transaction: StoreTransaction, store: StoreProvider, services: Services
) -> None:
    """Tell the store a credited purchase was delivered; the sweep retries a failure."""
    if row.store_finished_at is not None or row.fulfilled_at is None:
        return
    try:
        await store.finish(transaction)
    except ProviderUnavailable as exc:
        log.warning("store purchase %s not finished at the store yet: %s", row.id, exc)
        return
    now = services.clock.now()
    async with services.db.writing() as uow:
        await uow.purchases.note_store_finished(row.id, now)
        await uow.commit()
    row.store_finished_at = now


async def handle_store_notice(
    provider: ProviderName, notice: StoreNotice, services: Services
) -> str:
    """Act once on a verified store notification; ProviderUnavailable asks for a redelivery."""
    return await acted_once(
        provider.value,
        notice.event_id,
        notice.event_type,
        None,
        _act(provider, notice, services),
        services,
    )


async def _act(provider: ProviderName, notice: StoreNotice, services: Services) -> str:
    store = services.stores[provider]
    if notice.kind is NoticeKind.PURCHASED:
        return await _announced(store, notice, services)
    if notice.kind in (NoticeKind.REFUNDED, NoticeKind.REFUND_REVERSED):
        assert notice.transaction is not None
        return await _refund_notice(provider, notice, notice.transaction, services)
    if notice.kind is NoticeKind.VOIDED:
        # The voided entry is listed from its voidedTime, close to the event's; the earlier
        # of the event's time and ours, less the sweep's lookback, covers clock skew.
        since = min(notice.reported_at, services.clock.now()) - services.store_sweep.lookback
        outcomes = await apply_voided(store, await store.voided_since(since), services)
        return "refunded" if "refunded" in outcomes else "nothing"
    return "ignored"


async def _announced(store: StoreProvider, notice: StoreNotice, services: Services) -> str:
    """A purchase the store announces: credited to the account its token names, as a redeem
    by the app would (the app may never send it: closed, crashed)."""
    transaction = notice.transaction
    if transaction is None:
        if not notice.purchase_token or not notice.product_id:
            return "ignored"
        proof = StoreProof(
            Store(store.name.value),
            purchase_token=notice.purchase_token,
            product_id=notice.product_id,
        )
        try:
            transaction = await store.verify_purchase(proof)
        except StorePurchaseInvalid as exc:
            return exc.reason.lower()
    if not transaction.account_token:
        return "no_account"
    # Account ids are lower-case UUIDs; StoreKit may hand appAccountToken back upper-cased.
    account_id = transaction.account_token.strip().lower()
    try:
        row = await credit_transaction(account_id, transaction, services)
    except AccountNotFound:
        return "unknown_account"
    except SubscriptionRequired:
        return "subscription_required"
    except CreditError as exc:
        return type(exc).__name__.lower()
    await finish(row, transaction, store, services)
    return row.status.lower()


async def _refund_notice(
    provider: ProviderName, notice: StoreNotice, transaction: StoreTransaction, services: Services
) -> str:
    async with services.db.reading() as uow:
        row = await uow.purchases.by_payment(provider.value, transaction.transaction_id)
    if row is None:
        log.warning("%s %s names no purchase of ours", notice.event_type, notice.event_id)
        return "unknown_purchase"
    if notice.kind is NoticeKind.REFUNDED:
        amount = refunded_share(
            row.price_cents, quantity=row.quantity, per_100000=transaction.revocation_per_100000
        )
        kind = ReversalKind.REFUND
    else:
        amount, kind = 0, ReversalKind.REFUND_REVERSAL
    reversal = Reversal(
        kind,
        # Apple refunds a transaction once (a reversal takes that refund back).
        reversal_id=f"refund:{transaction.transaction_id}",
        payment_reference=transaction.transaction_id,
        amount_cents=amount,
        reported_at=notice.reported_at,
    )
    return await apply_reversal(reversal, services, provider=provider)


async def apply_voided(
    store: StoreProvider, voided: list[VoidedPurchase], services: Services
) -> list[str]:
    """Revoke what each voided purchase stands for, once per voided entry."""
    outcomes = []
    for item in voided:
        async with services.db.reading() as uow:
            row = await uow.purchases.by_payment(store.name.value, item.purchase_token)
        if row is None:
            outcomes.append("unknown_purchase")
            continue
        digest = hashlib.sha256(item.purchase_token.encode()).hexdigest()[:40]
        reversal = Reversal(
            ReversalKind.REFUND,
            reversal_id=f"voided:{digest}:{int(item.voided_at.timestamp() * 1000)}",
            payment_reference=item.purchase_token,
            amount_cents=refunded_share(
                row.price_cents,
                quantity=row.quantity,
                voided_quantity=item.voided_quantity,
                per_100000=None,
            ),
            reported_at=item.voided_at,
        )
        outcomes.append(await apply_reversal(reversal, services, provider=store.name))
    return outcomes


async def reconcile_stores(services: Services, *, limit: int = 100) -> int:
    """The sweep's store part: finish credited purchases the store was not told of, and
    (every ``StoreSweep.every``) pull voided purchases and revoke them. Returns the count of
    purchases finished or reversed."""
    done = 0
    now = services.clock.now()
    for name, store in services.stores.items():
        async with services.db.reading() as uow:
            unfinished = await uow.purchases.store_unfinished(name.value, limit)
        for row in unfinished:
            if row.store_product_id is None or row.payment_reference is None:
                continue
            transaction = StoreTransaction(
                store=Store(name.value),
                transaction_id=row.payment_reference,
                product_id=row.store_product_id,
                quantity=row.quantity,
                account_token=row.account_id,
                state=StoreState.PURCHASED,
                purchased_at=row.purchased_at,
            )
            await finish(row, transaction, store, services)
            done += row.store_finished_at is not None
        last = services.store_sweep.pulled_at.get(name)
        if last is not None and now - last < services.store_sweep.every:
            continue
        try:
            voided = await store.voided_since(now - services.store_sweep.lookback)
        except ProviderUnavailable as exc:
            log.warning("%s voided purchases not pulled: %s", name, exc)
            continue
        services.store_sweep.pulled_at[name] = now
        done += (await apply_voided(store, voided, services)).count("refunded")
    return done
