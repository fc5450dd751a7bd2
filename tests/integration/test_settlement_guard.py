"""A settlement writes only over the PENDING status it read under the purchase's lock.

Every writer of a purchase's status locks its row, so the status read in the settlement's
state cannot move before the plan is written; the plan's compare-and-set still checks it,
and a settlement that finds it moved raises and commits nothing (no second grant).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.domain.purchases import PaymentState, PurchaseStatus
from app.payments.port import Payment
from app.persistence.plans import PurchaseMoved
from app.services.fulfilment import settle_locked
from tests.api_client import Api
from tests.conftest import ApiFactory
from tests.db import Rows

BUY = """
mutation Buy($key: String!) {
  purchasePack(input: {packId: "pack-500", idempotencyKey: $key}) {
    ... on PaymentPending { purchase { id } }
  }
}
"""


async def pending_purchase(api: Api, account_id: str) -> str:
    data = await api.as_user(account_id, BUY, {"key": "buy-1"})
    return str(data["purchasePack"]["purchase"]["id"])


async def test_a_settlement_whose_purchase_moved_under_it_commits_nothing(
    make_api: ApiFactory, app: object, rows: Rows
) -> None:
    # given a pending purchase, paid
    pending = await make_api(sandbox_payments="pending")
    account_id = await pending.subscribed_account()
    purchase_id = await pending_purchase(pending, account_id)
    paid = Payment("cs_guard", PaymentState.PAID, purchase_id, 1000, "USD", "pi_guard")
    services = app.state.services  # type: ignore[attr-defined]
    # when its status moves after the settlement read it (in the same transaction: no
    # other could, the row is locked)
    with pytest.raises(PurchaseMoved):
        async with services.db.writing() as uow:
            account = await uow.lock_owner_of_purchase(purchase_id)
            assert account is not None
            settling = await uow.settling_state(account, purchase_id)
            assert settling.purchase.status is PurchaseStatus.PENDING
            connection = await uow.session.connection()
            await connection.execute(
                sa.text("UPDATE pack_purchases SET status = 'EXPIRED' WHERE id = :p"),
                {"p": purchase_id},
            )
            await settle_locked(
                uow, settling.state, settling.purchase, paid, services, pack_on_sale=True
            )
            await uow.commit()
    # then nothing was written: no grant, the purchase still pending
    assert [e for e in await rows.ledger(account_id) if e["reference_id"] == purchase_id] == []
    (purchase,) = await rows.all("SELECT status FROM pack_purchases WHERE id = :p", p=purchase_id)
    assert purchase["status"] == "PENDING"
    assert (await rows.account(account_id))["pack_balance"] == 0
