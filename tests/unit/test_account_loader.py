"""The account loader: the keys asked in one turn of the event loop are one batch."""

from __future__ import annotations

import asyncio
from typing import Any

from graphql_schema.loaders import AccountLoader


class RecordingLoader(AccountLoader):
    """Answers ``view-<key>`` and records each batch."""

    def __init__(self) -> None:
        super().__init__(services=None)  # type: ignore[arg-type]
        self.batches: list[list[str]] = []

    async def batch_load_fn(self, keys: list[str]) -> list[Any]:
        self.batches.append(list(keys))
        return [f"view-{key}" for key in keys]


async def test_loads_of_one_turn_share_one_batch() -> None:
    # As resolvers of sibling fields call it: each in its own task, started together.
    loader = RecordingLoader()

    async def resolver(key: str) -> Any:
        return await loader.load(key)

    answers = await asyncio.gather(resolver("a"), resolver("b"), resolver("c"))

    assert answers == ["view-a", "view-b", "view-c"]
    assert loader.batches == [["a", "b", "c"]]


async def test_a_key_asked_twice_is_loaded_once() -> None:
    loader = RecordingLoader()

    first = await loader.load("a")
    again = await asyncio.gather(loader.load("a"), loader.load("a"))

    assert (first, again) == ("view-a", ["view-a", "view-a"])
    assert loader.batches == [["a"]]


async def test_many_keys_at_once_are_one_batch() -> None:
    loader = RecordingLoader()

    assert await loader.load_many(["a", "b"]) == ["view-a", "view-b"]
    assert loader.batches == [["a", "b"]]
