"""The in-process store of registered texts is bounded by entries and by bytes."""

from __future__ import annotations

from graphql_schema.engine.persisted_queries import InProcessDocuments


async def test_the_store_evicts_the_least_recently_used_text_past_its_entries() -> None:
    store = InProcessDocuments(max_entries=2, max_bytes=1000)
    await store.put("a", "{ a }")
    await store.put("b", "{ b }")
    assert await store.get("a") == "{ a }"  # a is now the most recently used

    await store.put("c", "{ c }")

    assert await store.get("b") is None
    assert await store.get("a") == "{ a }" and await store.get("c") == "{ c }"


async def test_the_store_evicts_past_its_bytes_and_refuses_a_text_larger_than_all() -> None:
    store = InProcessDocuments(max_entries=100, max_bytes=10)
    await store.put("a", "12345")
    await store.put("b", "67890")
    await store.put("c", "x")  # 11 bytes held: the oldest goes

    assert await store.get("a") is None
    assert len(store) == 2
    await store.put("huge", "y" * 11)
    assert await store.get("huge") is None
