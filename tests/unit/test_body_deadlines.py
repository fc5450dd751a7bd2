"""One timer for every body being read: a wait past its deadline is cancelled as a timeout,
a wait that ends in time, or a cancellation from outside, is not."""

from __future__ import annotations

import asyncio

import pytest

from app.security.http_guards import Deadlines


async def _wait(deadlines: Deadlines, done: asyncio.Event) -> str:
    task = asyncio.current_task()
    assert task is not None
    deadlines.watch(task)
    try:
        await done.wait()
    except asyncio.CancelledError:
        if not deadlines.expired(task):
            raise
        return "timed out"
    finally:
        deadlines.forget(task)
    return "in time"


async def test_waits_past_the_deadline_time_out_and_the_others_do_not() -> None:
    # given three waits under one 50 ms deadline, the second of which ends at once
    deadlines = Deadlines(0.05)
    never, soon = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(_wait(deadlines, never))
    second = asyncio.create_task(_wait(deadlines, soon))
    third = asyncio.create_task(_wait(deadlines, never))
    await asyncio.sleep(0)
    soon.set()

    # when they settle, then only the two still waiting at the deadline timed out
    assert await asyncio.gather(first, second, third) == ["timed out", "in time", "timed out"]
    assert not deadlines._waiting and not deadlines._expired


async def test_a_wait_started_later_gets_its_own_full_time() -> None:
    deadlines = Deadlines(0.05)
    never = asyncio.Event()
    early = asyncio.create_task(_wait(deadlines, never))
    await asyncio.sleep(0.03)
    late_done = asyncio.Event()
    late = asyncio.create_task(_wait(deadlines, late_done))

    assert await early == "timed out"
    assert not late.done()  # 0.03 s of its 0.05 left when the first expired
    late_done.set()
    assert await late == "in time"


async def test_a_cancellation_from_outside_is_not_taken_for_a_timeout() -> None:
    deadlines = Deadlines(10.0)
    task = asyncio.create_task(_wait(deadlines, asyncio.Event()))
    await asyncio.sleep(0)
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert not deadlines._waiting
