"""A process's runs of one account take turns, in arrival order, and none goes without the
lock for a while after an unlocked write found the account moved."""

from __future__ import annotations

import asyncio

import pytest

from app.persistence.contention import MOVED_LIMIT, Contention


class Ticking:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_runs_of_one_account_take_turns_in_arrival_order() -> None:
    contention = Contention()
    order: list[str] = []
    release = asyncio.Event()

    async def run(name: str) -> None:
        async with contention.turn("a"):
            order.append(f"{name} in")
            if name == "first":
                await release.wait()
            order.append(f"{name} out")

    tasks = [asyncio.create_task(run(name)) for name in ("first", "second", "third")]
    await asyncio.sleep(0)  # each task has arrived: the first holds the turn, two wait
    assert order == ["first in"]
    assert contention.queued("a") == 3
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["first in", "first out", "second in", "second out", "third in", "third out"]
    assert contention.queued("a") == 0  # nothing kept once no run is left


async def test_other_accounts_do_not_wait_for_an_accounts_turn() -> None:
    contention = Contention()
    async with contention.turn("a"):
        async with asyncio.timeout(1):
            async with contention.turn("b"):
                assert contention.queued("b") == 1


async def test_a_run_cancelled_while_waiting_leaves_the_queue() -> None:
    contention = Contention()
    async with contention.turn("a"):
        waiting = asyncio.create_task(contention.turn("a").__aenter__())
        await asyncio.sleep(0)
        assert contention.queued("a") == 2
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert contention.queued("a") == 1
    assert contention.queued("a") == 0


def test_an_account_never_found_moved_may_go_unlocked() -> None:
    assert Contention().may_go_unlocked("a") is True


def test_an_account_found_moved_takes_the_lock_until_the_cooldown_has_passed() -> None:
    clock = Ticking()
    contention = Contention(cooldown=1.0, monotonic=clock)
    contention.moved("a")
    assert contention.may_go_unlocked("a") is False
    assert contention.may_go_unlocked("b") is True
    clock.now += 0.999
    assert contention.may_go_unlocked("a") is False
    clock.now += 0.002
    assert contention.may_go_unlocked("a") is True


def test_the_moved_accounts_remembered_stay_bounded() -> None:
    clock = Ticking()
    contention = Contention(monotonic=clock)
    for i in range(MOVED_LIMIT + 1):
        contention.moved(f"account-{i}")
    # the oldest half is forgotten, the newest still takes the lock
    assert contention.may_go_unlocked("account-0") is True
    assert contention.may_go_unlocked(f"account-{MOVED_LIMIT}") is False
