"""The sliding-window counter: what it allows, when it lets a refused caller retry."""

from __future__ import annotations

import logging
import os
import uuid

import pytest

from app.security.rate_limits import MemoryCounters, Rate, RateLimiter, parse_rate

REDIS_URL = os.environ.get("CREDITGATE_TEST_REDIS_URL")
START = 1_800_000_000.0  # a window boundary for a minute (divisible by 60)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def _limiter(
    clock: Clock, redis_url: str | None = None, per_account: str = "3/minute"
) -> RateLimiter:
    return RateLimiter(
        per_account,
        "1000/minute",
        redis_url=redis_url,
        key_prefix=f"creditgate-test-{uuid.uuid4().hex}",
        now=clock,
    )


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("60/minute", Rate(60, 60)),
        ("5 per second", Rate(5, 1)),
        ("100/2 hours", Rate(100, 7200)),
        ("10/Day", Rate(10, 86400)),
    ],
)
def test_rates_are_read_as_calls_per_window(text: str, rate: Rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    "text", ["sixty a minute", "60/fortnight", "60", "/minute", "60/0 minutes"]
)
def test_anything_else_is_not_a_rate(text: str) -> None:
    with pytest.raises(ValueError, match="60/minute"):
        parse_rate(text)


BACKENDS = [None, REDIS_URL] if REDIS_URL else [None]


@pytest.mark.parametrize("redis_url", BACKENDS, ids=lambda u: "redis" if u else "memory")
async def test_the_previous_window_fades_out_linearly(redis_url: str | None) -> None:
    # given 3 calls at the start of one minute
    clock = Clock()
    limiter = _limiter(clock, redis_url)
    for _ in range(3):
        assert await limiter.hit(account_id="a", ip=None) is None

    # then the 4th is refused for the rest of that minute, and asked to wait until the
    # previous minute's 3 calls weigh 2: 20 s into the next one
    refusal = await limiter.hit(account_id="a", ip=None)
    assert refusal is not None and (refusal.scope, refusal.retry_after) == ("account", 80)
    clock.now = START + 59
    assert await limiter.hit(account_id="a", ip=None) is not None
    clock.now = START + 60 + 19
    assert await limiter.hit(account_id="a", ip=None) is not None
    clock.now = START + 60 + 20
    assert await limiter.hit(account_id="a", ip=None) is None  # 3 * 2/3 + 1 = 3
    assert await limiter.hit(account_id="a", ip=None) is not None

    # and two windows later nothing is remembered
    clock.now = START + 180
    for _ in range(3):
        assert await limiter.hit(account_id="a", ip=None) is None
    await limiter.aclose()


@pytest.mark.parametrize("redis_url", BACKENDS, ids=lambda u: "redis" if u else "memory")
async def test_a_refused_call_counts_against_no_budget(redis_url: str | None) -> None:
    clock = Clock()
    limiter = RateLimiter(
        "2/minute", "3/minute", redis_url=redis_url, key_prefix=uuid.uuid4().hex, now=clock
    )
    assert await limiter.hit(account_id="a", ip="ip", cost=2) is None

    # the account's budget refuses: the IP's is not charged either
    refusal = await limiter.hit(account_id="a", ip="ip")
    assert refusal is not None and refusal.scope == "account"
    assert await limiter.hit(account_id="b", ip="ip") is None  # 2 + 1 = 3 of the IP's
    refusal = await limiter.hit(account_id="c", ip="ip")
    assert refusal is not None and refusal.scope == "ip"
    await limiter.aclose()


async def test_a_redis_that_is_down_lets_calls_through_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = _limiter(Clock(), "redis://127.0.0.1:9", per_account="1/minute")

    with caplog.at_level(logging.ERROR, logger="creditgate"):
        results = [await limiter.hit(account_id="a", ip=None) for _ in range(3)]

    assert results == [None, None, None]
    assert any("rate limits not counted" in r.getMessage() for r in caplog.records)
    await limiter.aclose()


def test_idle_keys_are_dropped_so_memory_follows_the_keys_in_use() -> None:
    counters = MemoryCounters()
    for n in range(5000):
        counters.add(f"old-{n}", 1, 1)
    for n in range(5000):  # the count passes its bound: idle keys are swept
        counters.add(f"new-{n}", 10, 1)

    assert len(counters._counts) <= 5000
    assert counters.counts("new-0", 10) == (0, 1) and counters.counts("old-0", 10) == (0, 0)
