"""Every account read in one request is one query, however many fields ask."""

from __future__ import annotations

from typing import Any

from tests.api_client import Api
from tests.db import Rows, sent_statements

SIBLINGS = """query($a: ID!, $b: ID!, $c: ID!) {
  first: account(id: $a) { id creditsTotal }
  second: account(id: $b) { id packBalance }
  many: accounts(ids: [$a, $c]) { id subscriptionBalance }
}"""


async def test_sibling_fields_reading_accounts_share_one_query(
    api: Api, rows: Rows, app: Any
) -> None:
    a, b, c = [await api.subscribed_account() for _ in range(3)]

    with sent_statements(app) as statements:
        body = await api.post(SIBLINGS, {"a": a, "b": b, "c": c}, token=api.token())

    assert "errors" not in body, body
    data = body["data"]
    assert (data["first"]["id"], data["second"]["id"]) == (a, b)
    assert [account["id"] for account in data["many"]] == [a, c]
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1, selects


async def test_a_user_reading_itself_twice_is_one_query(api: Api, rows: Rows, app: Any) -> None:
    account = await api.subscribed_account()
    query = "query($id: ID!) { me { creditsTotal } account(id: $id) { packBalance } }"

    with sent_statements(app) as statements:
        body = await api.post(query, {"id": account}, token=api.token(account))

    assert "errors" not in body, body
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1, selects
