"""Budgets of mutations per account and per client IP, counted with the ``limits`` package.

Counters live in this process's memory, or in Redis when a URL is given so that every
process shares one budget. A moving window: a budget of 60/minute never allows 61 calls
in any 60 seconds.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Literal

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

logger = logging.getLogger("creditgate")
Scope = Literal["account", "ip"]


def parse_rate(rate: str) -> RateLimitItem:
    """``"60/minute"``, ``"5 per second"``; anything else is refused when settings load."""
    try:
        return parse(rate)
    except ValueError as exc:
        raise ValueError(f"not a rate like '60/minute': {rate!r}") from exc


@dataclass(frozen=True, slots=True)
class Refusal:
    scope: Scope
    retry_after: int  # whole seconds until the budget has room again, at least 1


class RateLimiter:
    def __init__(
        self, per_account: str, per_ip: str, *, redis_url: str | None, key_prefix: str
    ) -> None:
        self._budgets: dict[Scope, RateLimitItem] = {
            "account": parse_rate(per_account),
            "ip": parse_rate(per_ip),
        }
        self._redis_url = redis_url
        self._key_prefix = key_prefix
        self._pool: ConnectionPool | None = None
        self._limiter: MovingWindowRateLimiter | None = None

    def _get_limiter(self) -> MovingWindowRateLimiter:
        # Built on first use, inside the running event loop the storage binds to.
        if self._limiter is None:
            if self._redis_url:
                self._pool = ConnectionPool.from_url(self._redis_url)
                storage: MemoryStorage | RedisStorage = RedisStorage(
                    f"async+{self._redis_url}",
                    implementation="redispy",
                    key_prefix=self._key_prefix,
                    connection_pool=self._pool,
                )
            else:
                storage = MemoryStorage()
            self._limiter = MovingWindowRateLimiter(storage)
        return self._limiter

    async def hit(self, *, account_id: str | None, ip: str | None, cost: int = 1) -> Refusal | None:
        """Count ``cost`` calls against each budget that applies, or refuse without counting."""
        keys = [(scope, key) for scope, key in (("ip", ip), ("account", account_id)) if key]
        limiter = self._get_limiter()
        try:
            for scope, key in keys:
                if not await limiter.test(self._budgets[scope], scope, key, cost=cost):
                    return await self._refusal(scope, key)
            for scope, key in keys:
                if not await limiter.hit(self._budgets[scope], scope, key, cost=cost):
                    return await self._refusal(scope, key)
        except (RedisError, OSError) as exc:
            # The counter store is down: serve rather than refuse every mutation, and say so.
            logger.error("rate limits not counted: %s", exc)
        return None

    async def _refusal(self, scope: Scope, key: str) -> Refusal:
        stats = await self._get_limiter().get_window_stats(self._budgets[scope], scope, key)
        return Refusal(scope, max(1, math.ceil(stats.reset_time - time.time())))

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.disconnect()
