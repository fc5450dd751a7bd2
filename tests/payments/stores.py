"""What the store tests share: the redeem mutation, its answers, and reading a purchase."""

from __future__ import annotations

from typing import Any

from tests.api.test_pack_payments import PURCHASE_FIELDS
from tests.api_client import Api
from tests.db import Rows

REDEEM = f"""
mutation Redeem($input: RedeemStorePurchaseInput!) {{
  redeemStorePurchase(input: $input) {{
    __typename
    ... on PackPurchased {{ purchase {{ {PURCHASE_FIELDS} }} account {{ packBalance }} }}
    ... on PurchaseClosed {{ purchase {{ {PURCHASE_FIELDS} }} message }}
    ... on StorePurchaseInvalid {{ reason message }}
    ... on PackNotFound {{ packId }}
    ... on Error {{ message }}
  }}
}}
"""
PURCHASE = f"query Purchase($id: ID!) {{ purchase(id: $id) {{ {PURCHASE_FIELDS} }} }}"


async def redeem(api: Api, account_id: str, **proof: Any) -> Any:
    data = await api.as_user(account_id, REDEEM, {"input": proof})
    return data["redeemStorePurchase"]


async def purchase(api: Api, purchase_id: str) -> Any:
    return (await api.as_service(PURCHASE, {"id": purchase_id}))["purchase"]


async def store_purchases(rows: Rows) -> list[dict[str, Any]]:
    return await rows.all(
        "SELECT id, account_id, provider, status, credits, quantity, payment_reference,"
        " store_finished_at FROM pack_purchases WHERE provider IN ('APP_STORE', 'GOOGLE_PLAY')"
    )


async def grants(rows: Rows, account_id: str) -> list[dict[str, Any]]:
    return [
        e for e in await rows.ledger(account_id) if e["kind"] == "GRANT" and e["bucket"] == "PACK"
    ]
