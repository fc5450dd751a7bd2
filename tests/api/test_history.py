"""History reads as cursor connections, newest first; a user sees only their own."""

from datetime import UTC, datetime, timedelta
from typing import Any

from app.clock import FrozenClock
from tests.api_client import Api, Worker

GENERATIONS = """
query($first: Int!, $after: String, $status: GenerationStatus) {
  me { generations(first: $first, after: $after, status: $status) {
    edges { cursor node { id tool status } }
    pageInfo { hasNextPage endCursor }
  } }
}
"""
LEDGER = """
query($first: Int!, $after: String) {
  me { ledger(first: $first, after: $after) {
    edges { node { kind bucket amount balanceAfter referenceType referenceId occurredAt } }
    pageInfo { hasNextPage endCursor }
  } }
}
"""
GENERATION = "query($id: ID!) { generation(id: $id) { id status cost } }"


async def all_pages(api: Api, account_id: str, query: str, first: int, **extra: Any) -> list[Any]:
    pages, after = [], None
    while True:
        data = await api.as_user(account_id, query, {"first": first, "after": after, **extra})
        connection = next(iter(data["me"].values()))
        pages.append([edge["node"] for edge in connection["edges"]])
        if not connection["pageInfo"]["hasNextPage"]:
            return pages
        after = connection["pageInfo"]["endCursor"]


async def test_generations_page_newest_first_with_stable_cursors(
    api: Api, clock: FrozenClock
) -> None:
    account_id = await api.subscribed_account()
    ids = []
    for i in range(5):
        clock.advance(timedelta(seconds=1))
        ids.append((await api.run(account_id, "TURBO", key=f"r{i}"))["generation"]["id"])
    pages = await all_pages(api, account_id, GENERATIONS, 2)
    assert [[n["id"] for n in page] for page in pages] == [
        [ids[4], ids[3]],
        [ids[2], ids[1]],
        [ids[0]],
    ]


async def test_generations_filter_by_status(api: Api, clock: FrozenClock) -> None:
    account_id = await api.subscribed_account()
    await api.run(account_id, "TURBO", key="a")
    clock.advance(timedelta(seconds=1))
    await api.run(account_id, "PRO", key="b")
    await Worker(api).claim(limit=1)
    data = await api.as_user(account_id, GENERATIONS, {"first": 10, "status": "QUEUED"})
    nodes = [e["node"] for e in data["me"]["generations"]["edges"]]
    assert [(n["tool"], n["status"]) for n in nodes] == [("PRO", "QUEUED")]


async def test_the_ledger_lists_every_change_newest_first(api: Api, clock: FrozenClock) -> None:
    account_id = await api.subscribed_account()
    bought = await api.buy(account_id)
    run = await api.run(account_id, "ULTRA")
    pages = await all_pages(api, account_id, LEDGER, 2)
    entries = [entry for page in pages for entry in page]
    assert [(e["kind"], e["bucket"], e["amount"], e["balanceAfter"]) for e in entries] == [
        ("SPEND", "SUBSCRIPTION", -80, 920),
        ("GRANT", "PACK", 500, 500),
        ("GRANT", "SUBSCRIPTION", 1000, 1000),
    ]
    assert entries[0]["referenceId"] == run["generation"]["id"]
    assert entries[1]["referenceId"] == bought["purchase"]["id"]
    assert entries[1]["referenceType"] == "PURCHASE"


async def test_the_ledger_shows_renewals_as_soon_as_they_are_due(
    api: Api, clock: FrozenClock
) -> None:
    # given a renewal that no write has recorded yet
    account_id = await api.subscribed_account()
    clock.set(datetime(2026, 2, 16, tzinfo=UTC))
    # when the dashboard reads the history
    data = await api.as_user(account_id, LEDGER, {"first": 2})
    # then the expiry and the new grant are there, dated at the renewal
    nodes = [e["node"] for e in data["me"]["ledger"]["edges"]]
    assert [(n["kind"], n["amount"], n["occurredAt"]) for n in nodes] == [
        ("GRANT", 1000, "2026-02-15T12:00:00+00:00"),
        ("EXPIRY", -1000, "2026-02-15T12:00:00+00:00"),
    ]


async def test_a_foreign_or_broken_cursor_is_bad_input(api: Api) -> None:
    account_id = await api.subscribed_account()
    ledger = await api.as_user(account_id, LEDGER, {"first": 1})
    cursor = ledger["me"]["ledger"]["pageInfo"]["endCursor"]
    for after in [cursor, "%%%not-base64"]:
        body = await api.post(
            GENERATIONS, {"first": 1, "after": after}, token=api.token(account_id)
        )
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_page_size_is_bounded(api: Api) -> None:
    account_id = await api.subscribed_account()
    for first in [0, 101]:
        body = await api.post(LEDGER, {"first": first}, token=api.token(account_id))
        assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "first"}


async def test_a_user_sees_only_their_own_generations(api: Api) -> None:
    alice = await api.subscribed_account()
    bob = await api.subscribed_account()
    run = await api.run(alice, "PRO")
    generation_id = run["generation"]["id"]
    assert (await api.as_user(alice, GENERATION, {"id": generation_id}))["generation"] == {
        "id": generation_id,
        "status": "QUEUED",
        "cost": 38,
    }
    assert (await api.as_user(bob, GENERATION, {"id": generation_id}))["generation"] is None
    assert (await api.as_service(GENERATION, {"id": generation_id}))["generation"] is not None
