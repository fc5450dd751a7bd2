"""Budgets of mutations per account and per client IP: sliding-window counters, O(1) a hit.

Each budget ("60/minute") counts calls in fixed windows of its length and judges a call by
the current window's count plus the previous window's, weighted by how much of it still lies
within the last window length: ``previous * (1 - elapsed / window) + current``. That is the
sliding-window counter approximation of a moving window (it assumes the previous window's
calls were spread evenly), in constant time and memory per key; the moving window it
replaces kept a list of every call and handed each check to a thread. A refused call is not
counted, and a call is counted against every budget that applies or against none.

Counters live in this process's memory, or in Redis when a URL is given, so that every
process shares one budget: then a check-and-count is one round trip (a Lua script over the
keys of both budgets). If Redis fails, mutations are served uncounted (failing open) and the
error is logged.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger("creditgate")
Scope = Literal["account", "ip"]

UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
RATE = re.compile(r"\s*(\d+)\s*(?:/|per)\s*(\d+)?\s*(second|minute|hour|day)s?\s*", re.I)


@dataclass(frozen=True, slots=True)
class Rate:
    limit: int  # calls allowed ...
    window: int  # ... per this many seconds


def parse_rate(rate: str) -> Rate:
    """``"60/minute"``, ``"5 per second"``, ``"100/2 hours"``; anything else is refused when
    settings load."""
    match = RATE.fullmatch(rate)
    if match is None:
        raise ValueError(f"not a rate like '60/minute': {rate!r}")
    count, multiple, unit = match.groups()
    window = int(multiple or 1) * UNITS[unit.lower()]
    if window <= 0:
        raise ValueError(f"not a rate like '60/minute': {rate!r}")
    return Rate(int(count), window)


@dataclass(frozen=True, slots=True)
class Refusal:
    scope: Scope
    retry_after: int  # whole seconds until the budget has room again, at least 1


def retry_after(rate: Rate, previous: int, current: int, elapsed: float, cost: int) -> int:
    """Seconds until ``cost`` more calls fit the sliding estimate: within this window when
    the previous window's share fading is enough, else into the next (up to two windows)."""
    room = rate.limit - cost
    window = rate.window
    if room < 0:
        return window  # never fits; ask again after a window
    if current <= room:
        # The previous window's weight must fall to (room - current) / previous.
        needed = window * (1 - (room - current) / previous) if previous else elapsed
        wait = needed - elapsed
    else:
        # Only the next window can: this one's count becomes its "previous".
        wait = (window - elapsed) + window * (1 - room / current)
    return max(1, math.ceil(wait))


class MemoryCounters:
    """This process's counters: per key its window number and the two windows' counts."""

    def __init__(self) -> None:
        self._counts: dict[str, list[int]] = {}  # key -> [window number, previous, current]
        self._purge_above = 1024

    def counts(self, key: str, number: int) -> tuple[int, int]:
        entry = self._counts.get(key)
        if entry is None or entry[0] < number - 1:
            return 0, 0
        if entry[0] == number - 1:
            return entry[2], 0
        return entry[1], entry[2]

    def add(self, key: str, number: int, cost: int) -> None:
        previous, current = self.counts(key, number)
        self._counts[key] = [number, previous, current + cost]
        if len(self._counts) > self._purge_above:
            self._purge(number)

    def _purge(self, number: int) -> None:
        # Keys idle for two windows count nothing; dropped in one sweep now and then, so a
        # hit stays O(1) amortised and memory follows the keys actually in use.
        self._counts = {k: v for k, v in self._counts.items() if v[0] >= number - 1}
        self._purge_above = max(1024, 2 * len(self._counts))


# KEYS: per budget, the previous and the current window's key. ARGV: cost, then per budget
# its limit, the previous window's weight and the keys' time to live. Counts every budget
# or none; returns 0, or the refusing budget's number (1-based) with its two counts.
CHECK_AND_COUNT = """
local cost = tonumber(ARGV[1])
local n = #KEYS / 2
local counts = {}
for i = 1, n do
  local previous = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local current = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  local limit = tonumber(ARGV[3 * i - 1])
  local weight = tonumber(ARGV[3 * i])
  if previous * weight + current + cost > limit then
    return {i, previous, current}
  end
end
for i = 1, n do
  redis.call('INCRBY', KEYS[2 * i], cost)
  redis.call('EXPIRE', KEYS[2 * i], tonumber(ARGV[3 * i + 1]))
end
return {0, 0, 0}
"""


class RateLimiter:
    def __init__(
        self,
        per_account: str,
        per_ip: str,
        *,
        redis_url: str | None,
        key_prefix: str,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._rates: dict[Scope, Rate] = {
            "account": parse_rate(per_account),
            "ip": parse_rate(per_ip),
        }
        self._redis_url = redis_url
        self._key_prefix = key_prefix
        self._now = now
        self._memory = MemoryCounters()
        self._redis: Redis | None = None
        self._script: Any = None

    async def hit(self, *, account_id: str | None, ip: str | None, cost: int = 1) -> Refusal | None:
        """Count ``cost`` calls against each budget that applies, or refuse without counting."""
        candidates: tuple[tuple[Scope, str | None], ...] = (("ip", ip), ("account", account_id))
        budgets = [(scope, key) for scope, key in candidates if key]
        if not budgets:
            return None
        now = self._now()
        if self._redis_url:
            try:
                return await self._hit_redis(budgets, now, cost)
            except (RedisError, OSError) as exc:
                # The counter store is down: serve rather than refuse every mutation, and say so.
                logger.error("rate limits not counted: %s", exc)
                return None
        return self._hit_memory(budgets, now, cost)

    def _hit_memory(
        self, budgets: Sequence[tuple[Scope, str]], now: float, cost: int
    ) -> Refusal | None:
        # No await in here: checking and counting are one step for this process's requests.
        placed = []
        for scope, key in budgets:
            rate = self._rates[scope]
            number, elapsed = divmod(now, rate.window)
            name = f"{scope}:{key}"
            previous, current = self._memory.counts(name, int(number))
            if previous * (1 - elapsed / rate.window) + current + cost > rate.limit:
                return Refusal(scope, retry_after(rate, previous, current, elapsed, cost))
            placed.append((name, int(number)))
        for name, number in placed:
            self._memory.add(name, number, cost)
        return None

    async def _hit_redis(
        self, budgets: Sequence[tuple[Scope, str]], now: float, cost: int
    ) -> Refusal | None:
        if self._redis is None:  # made on first use, inside the loop it binds to
            self._redis = Redis.from_url(self._redis_url)  # type: ignore[arg-type]
            self._script = self._redis.register_script(CHECK_AND_COUNT)
        keys: list[str] = []
        args: list[float] = [cost]
        for scope, key in budgets:
            rate = self._rates[scope]
            number, elapsed = divmod(now, rate.window)
            base = f"{self._key_prefix}:rate:{scope}:{key}:{rate.limit}/{rate.window}"
            keys += [f"{base}:{int(number) - 1}", f"{base}:{int(number)}"]
            args += [rate.limit, 1 - elapsed / rate.window, 2 * rate.window]
        refusing, previous, current = await self._script(keys=keys, args=args)
        if not refusing:
            return None
        scope = budgets[int(refusing) - 1][0]
        rate = self._rates[scope]
        elapsed = now % rate.window
        return Refusal(scope, retry_after(rate, int(previous), int(current), elapsed, cost))

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
