"""The store rules: whose a verified transaction is, what it is worth, what a refund takes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from app.domain.store_purchases import (
    Store,
    StoreProblem,
    StoreState,
    StoreTransaction,
    judge_transaction,
    refunded_share,
    store_sale,
)

ACCOUNT = "8f9c1a52-3b1e-4c3e-9d2a-6f0e1b2c3d4e"
BOUGHT = StoreTransaction(
    store=Store.APP_STORE,
    transaction_id="2000000123",
    product_id="com.creditgate.pack500",
    quantity=1,
    account_token=ACCOUNT,
    state=StoreState.PURCHASED,
    purchased_at=datetime(2026, 1, 15, tzinfo=UTC),
)


def test_a_purchased_transaction_of_the_account_is_creditable() -> None:
    assert judge_transaction(BOUGHT, ACCOUNT, product_id=None) is None
    assert judge_transaction(BOUGHT, ACCOUNT, product_id="com.creditgate.pack500") is None


def test_the_account_token_is_compared_without_regard_to_case() -> None:
    upper = replace(BOUGHT, account_token=ACCOUNT.upper())
    assert judge_transaction(upper, ACCOUNT, product_id=None) is None


@pytest.mark.parametrize("token", [None, "", "another-account"])
def test_a_transaction_for_another_or_no_account_is_wrong_account(token: str | None) -> None:
    other = replace(BOUGHT, account_token=token)
    assert judge_transaction(other, ACCOUNT, product_id=None) is StoreProblem.WRONG_ACCOUNT


@pytest.mark.parametrize("state", [StoreState.PENDING, StoreState.CANCELED, StoreState.REVOKED])
def test_a_transaction_not_paid_is_not_purchased(state: StoreState) -> None:
    unpaid = replace(BOUGHT, state=state)
    assert judge_transaction(unpaid, ACCOUNT, product_id=None) is StoreProblem.NOT_PURCHASED


def test_a_product_id_that_disagrees_is_wrong_product() -> None:
    assert judge_transaction(BOUGHT, ACCOUNT, product_id="other") is StoreProblem.WRONG_PRODUCT


def test_a_sale_is_quantity_packs_at_the_catalog_price() -> None:
    sale = store_sale(500, 1000, "USD", 3)
    assert (sale.credits, sale.price_cents, sale.currency) == (1500, 3000, "USD")


def test_a_refund_without_a_share_is_whole() -> None:
    assert refunded_share(3000, quantity=3, per_100000=None) == 3000


def test_a_quantity_based_refund_is_its_units_share_rounded_up() -> None:
    assert refunded_share(3000, quantity=3, voided_quantity=1, per_100000=None) == 1000
    assert refunded_share(1000, quantity=3, voided_quantity=1, per_100000=None) == 334
    # voiding every unit (or more) is the whole purchase
    assert refunded_share(3000, quantity=3, voided_quantity=3, per_100000=None) == 3000


def test_a_prorated_refund_is_its_percentage_rounded_up() -> None:
    assert refunded_share(1000, quantity=1, per_100000=50_000) == 500
    assert refunded_share(999, quantity=1, per_100000=33_333) == 333
    assert refunded_share(1000, quantity=1, per_100000=100_000) == 1000


def test_a_purchase_consumed_at_the_store_is_already_consumed() -> None:
    consumed = replace(BOUGHT, store=Store.GOOGLE_PLAY, consumed=True)
    assert judge_transaction(consumed, ACCOUNT, product_id=None) is StoreProblem.ALREADY_CONSUMED
