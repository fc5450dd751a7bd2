"""purchaseUpdated for a store purchase: a refund notification is pushed like a card refund."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.clock import FrozenClock
from app.settings import Settings
from tests.api_client import Api
from tests.live.test_purchase_updates import PURCHASE_UPDATED
from tests.payments.apple_signing import AppleChain
from tests.payments.test_app_store_purchases import AppStore, app_store_settings
from tests.servers import serving, ws_session


@pytest.fixture
def chain() -> AppleChain:
    return AppleChain.generate()


@pytest.fixture
def settings(settings: Settings, tmp_path: Path, chain: AppleChain) -> Settings:
    return settings.model_copy(update=app_store_settings(tmp_path, chain))


@pytest.fixture
async def address(app: Any) -> AsyncIterator[str]:
    async with serving(app) as address:
        yield address


async def test_a_store_refund_is_pushed_and_ends_the_purchases_feed(
    api: Api, address: str, chain: AppleChain, clock: FrozenClock
) -> None:
    apple = AppStore(api, chain, clock)
    account_id = await api.subscribed_account()
    signed, payload = apple.signed(account_id)
    purchase_id = (await apple.redeem(account_id, signed))["purchase"]["id"]
    async with ws_session(address, api.token(account_id)) as session:
        purchase = session.subscribe(PURCHASE_UPDATED, {"id": purchase_id})
        assert (await purchase.next())["purchaseUpdated"]["status"] == "FULFILLED"
        refunded = {**payload, "revocationDate": payload["purchaseDate"] + 1000}
        response = await apple.notify("REFUND", refunded, after=timedelta(hours=1))
        assert response.status_code == 200
        update = (await purchase.next())["purchaseUpdated"]
        assert (update["status"], update["revokedCredits"]) == ("REFUNDED", 500)
        with pytest.raises(StopAsyncIteration):
            await purchase.next()
