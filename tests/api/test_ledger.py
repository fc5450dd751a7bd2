"""Every balance change is an immutable ledger entry; reading a balance never sums it."""

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from app.clock import FrozenClock
from app.persistence.unit_of_work import Database
from tests.api_client import Api
from tests.db import Rows


async def test_balances_always_equal_the_sum_of_their_ledger_entries(
    api: Api, clock: FrozenClock, rows: Rows
) -> None:
    # given a history with grants, spends, a split, renewals and expiries
    account_id = await api.subscribed_account("STARTER", "ANNUAL")
    await api.buy(account_id, key="p1")
    for i in range(13):
        await api.run(account_id, "ULTRA", key=f"r{i}")
    clock.set(datetime(2026, 3, 20, tzinfo=UTC))
    await api.buy(account_id, "pack-1500", key="p2")
    await api.run(account_id, "STYLE_TRANSFER", key="late")
    # then
    account = await rows.account(account_id)
    sums = await rows.ledger_sums(account_id)
    assert sums == {
        "SUBSCRIPTION": account["subscription_balance"],
        "PACK": account["pack_balance"],
    }
    assert (account["subscription_balance"], account["pack_balance"]) == (985, 1500)
    entries = await rows.ledger(account_id)
    assert {e["kind"] for e in entries} == {"GRANT", "SPEND", "EXPIRY"}
    # and each entry records the balance it left behind
    running = {"SUBSCRIPTION": 0, "PACK": 0}
    for entry in entries:
        running[entry["bucket"]] += entry["amount"]
        assert entry["balance_after"] == running[entry["bucket"]]


@pytest.mark.parametrize(
    "statement", ["UPDATE ledger_entries SET amount = 1", "DELETE FROM ledger_entries"]
)
async def test_ledger_entries_cannot_be_changed_or_removed(
    api: Api, rows: Rows, statement: str
) -> None:
    account_id = await api.subscribed_account()
    with pytest.raises(sa.exc.DBAPIError, match="immutable"):
        await rows.execute(statement)
    assert await rows.ledger_sums(account_id) == {"SUBSCRIPTION": 1000, "PACK": 0}


async def test_reading_a_balance_does_not_read_the_ledger(api: Api, app: Any) -> None:
    # given an account with a long history
    account_id = await api.subscribed_account()
    for i in range(40):
        await api.run(account_id, "BACKGROUND_REMOVAL", key=f"r{i}")
    # when the editor reads the total
    db: Database = app.state.services.db
    with db.recording(transactions=False) as statements:
        total = (await api.balances(account_id))["creditsTotal"]
    # then one query answers it, and it never touches the ledger
    assert total == 960
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1
    assert not any("ledger_entries" in s for s in statements)
