"""A server killed between Stripe's checkout call and its commit loses nothing.

The purchase row is committed PENDING before Stripe is asked; Stripe makes the session,
the server dies before it notes it. The customer pays anyway (the session exists at
Stripe); ``creditgate payments reconcile`` then finds the session through the same
idempotency key and grants the pack once.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.test_pack_payments import BUY
from tests.conftest import JWT_SECRET
from tests.db import Rows
from tests.payments.conftest import STRIPE_SECRET_KEY, WEBHOOK_SECRET
from tests.payments.fake_stripe import FakeStripe
from tests.processes import Gateways, _environment, audit, connected
from tests.servers import until

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]


@pytest.fixture
def wall_clock_stripe() -> Iterator[FakeStripe]:
    """The servers sign sessions with the wall clock, so this fake keeps the same time."""
    fake = FakeStripe(secret_key=STRIPE_SECRET_KEY).start()
    yield fake
    fake.stop()


def stripe_env(fake: FakeStripe) -> dict[str, str | None]:
    return {
        "CREDITGATE_PAYMENT_PROVIDER": "stripe",
        "CREDITGATE_STRIPE_SECRET_KEY": STRIPE_SECRET_KEY,
        "CREDITGATE_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "CREDITGATE_STRIPE_API_BASE": fake.api_base,
        "CREDITGATE_PAYMENT_RECONCILE_AFTER_SECONDS": "0",
    }


def reconcile(database_url: str, env: dict[str, str | None], workdir: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "payments", "reconcile"],
        cwd=workdir,
        env=_environment(database_url, JWT_SECRET, env),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


async def test_a_server_killed_after_the_checkout_call_loses_nothing(
    gateways: Gateways,
    wall_clock_stripe: FakeStripe,
    postgres_url: str,
    postgres_rows: Rows,
    tmp_path: Path,
) -> None:
    fake = wall_clock_stripe
    env = stripe_env(fake)
    server = await gateways.start(env=env)
    async with connected(server, JWT_SECRET) as api:
        account_id = await api.subscribed_account()
        # when the server has asked Stripe for the checkout and is killed before its answer
        fake.hold_checkouts()
        purchase = asyncio.create_task(
            api.post(BUY, {"packId": "pack-500", "key": "order-1"}, token=api.token(account_id))
        )
        await until(fake.checkout_held.is_set, seconds=30)
        server.kill()
        server.wait()
        with pytest.raises(Exception):  # noqa: B017 - the connection dies with the server
            await purchase
    fake.release_checkouts()
    # then the purchase was committed, PENDING, without its checkout
    (row,) = await postgres_rows.all("SELECT id, status, checkout_session_id FROM pack_purchases")
    assert (row["status"], row["checkout_session_id"]) == ("PENDING", None)
    (session,) = fake.sessions.values()
    assert session["client_reference_id"] == row["id"]
    # when the customer pays at Stripe and the reconciliation runs
    fake.pay(session["id"])
    printed = reconcile(postgres_url, env, tmp_path)
    # then the pack is granted once, with the session Stripe made for it
    assert "1 purchases changed status" in printed
    (after,) = await postgres_rows.all("SELECT status, checkout_session_id FROM pack_purchases")
    assert after == {"status": "FULFILLED", "checkout_session_id": session["id"]}
    grants = await postgres_rows.all(
        "SELECT amount FROM ledger_entries WHERE kind = 'GRANT' AND reference_id = :id",
        id=row["id"],
    )
    assert [g["amount"] for g in grants] == [500]
    assert len(fake.sessions) == 1
    # a second reconciliation and the client's retry change nothing more
    assert "0 purchases changed status" in reconcile(postgres_url, env, tmp_path)
    restarted = await gateways.start(env=env)
    async with connected(restarted, JWT_SECRET) as api:
        retry = await api.post(
            BUY, {"packId": "pack-500", "key": "order-1"}, token=api.token(account_id)
        )
        assert retry["data"]["purchasePack"]["__typename"] == "PackPurchased"
        assert (await api.balances(account_id))["packBalance"] == 500
    result = audit(postgres_url, JWT_SECRET, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
