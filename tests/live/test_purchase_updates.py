"""purchaseUpdated: the dashboard's "credited" moment, pushed over graphql-transport-ws."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.settings import Settings
from tests.api.test_pack_payments import buy, settle
from tests.api_client import Api
from tests.live.test_subscriptions import CREDITS_CHANGED
from tests.servers import serving, ws_session

PURCHASE_UPDATED = """
subscription Purchase($id: ID!) {
  purchaseUpdated(id: $id) { id status revokedCredits expiresAt }
}
"""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"sandbox_payments": "pending"})


@pytest.fixture
async def address(app: Any) -> AsyncIterator[str]:
    async with serving(app) as address:
        yield address


async def test_each_status_change_of_a_purchase_is_pushed_until_it_is_final(
    api: Api, address: str
) -> None:
    account_id = await api.subscribed_account()
    purchase_id = (await buy(api, account_id))["purchase"]["id"]
    async with ws_session(address, api.token(account_id)) as session:
        purchase = session.subscribe(PURCHASE_UPDATED, {"id": purchase_id})
        credits = session.subscribe(CREDITS_CHANGED)
        assert (await purchase.next())["purchaseUpdated"]["status"] == "PENDING"
        assert (await credits.next())["creditsChanged"]["packBalance"] == 0
        # when the payment is confirmed
        await settle(api, purchase_id, "PAID")
        # then both feeds hear of it
        credited = (await purchase.next())["purchaseUpdated"]
        assert credited["status"] == "FULFILLED" and credited["expiresAt"] is not None
        assert (await credits.next())["creditsChanged"]["packBalance"] == 500
        # when the payment is refunded, the purchase ends and so does its feed
        await settle(api, purchase_id, "REFUNDED")
        refunded = (await purchase.next())["purchaseUpdated"]
        assert (refunded["status"], refunded["revokedCredits"]) == ("REFUNDED", 500)
        assert (await credits.next())["creditsChanged"]["packBalance"] == 0
        with pytest.raises(StopAsyncIteration):
            await purchase.next()


async def test_another_accounts_purchase_cannot_be_followed(api: Api, address: str) -> None:
    owner = await api.subscribed_account()
    other = await api.subscribed_account()
    purchase_id = (await buy(api, owner))["purchase"]["id"]
    async with ws_session(address, api.token(other)) as session:
        stream = session.subscribe(PURCHASE_UPDATED, {"id": purchase_id})
        with pytest.raises(Exception, match="does not exist"):
            await stream.next()
