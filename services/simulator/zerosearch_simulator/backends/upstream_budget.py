"""The daily budget of upstream queries (ZS_UPSTREAM_MAX_QUERIES): one counter per UTC day, in Redis when the
service has one (so every replica draws on the same budget), in the process otherwise.

A query takes one unit before it is sent and gives it back when no answer came of it (the upstream failed), so
the counter tracks the queries the upstream answered, or is answering now. If Redis fails, the replica counts on
its own until Redis answers again (and says so in its log): a budget is a guard against a runaway bill, not a
reason to stop serving.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone

logger = logging.getLogger(__name__)

KEY_PREFIX = "zerosearch:upstream-budget:"
# A day's counter outlives its day by one, for whoever wants to read yesterday's use.
KEY_TTL_S = 2 * 24 * 3600
RETRY_REDIS_AFTER_S = 5.0


def utc_day(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).strftime("%Y-%m-%d")


def seconds_to_next_day(now: datetime | None = None) -> float:
    now = now or datetime.now(timezone.utc)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - now).total_seconds()


class DailyBudget:
    """`take()` is True when a query may go out today; `give_back()` returns an unused unit."""

    def __init__(self, *, limit: int | None, scope: str, redis_url: str | None) -> None:
        self.limit = limit
        self.scope = scope
        self._redis = None
        if limit is not None and redis_url:
            import redis.asyncio as redis

            self._redis = redis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._local: dict[str, int] = {}
        self._down_until = 0.0

    @property
    def shared(self) -> bool:
        return self._redis is not None

    def _key(self, day: str) -> str:
        return f"{KEY_PREFIX}{self.scope}:{day}"

    async def used(self) -> int:
        """Units taken today (Redis when reachable, else this process's count)."""
        day = utc_day()
        if self._redis is not None and time.monotonic() >= self._down_until:
            try:
                return int(await self._redis.get(self._key(day)) or 0)
            except Exception as exc:  # any Redis failure: count locally for a while
                self._redis_failed(exc)
        return self._local.get(day, 0)

    async def take(self) -> bool:
        if self.limit is None:
            return True
        day = utc_day()
        if self._redis is not None and time.monotonic() >= self._down_until:
            try:
                key = self._key(day)
                async with self._redis.pipeline(transaction=True) as pipe:
                    count, _ = await pipe.incr(key).expire(key, KEY_TTL_S).execute()
                if count > self.limit:
                    await self._redis.decr(key)
                    return False
                return True
            except Exception as exc:
                self._redis_failed(exc)
        count = self._local.get(day, 0)
        if count >= self.limit:
            return False
        self._local = {day: count + 1}  # yesterday's count goes
        return True

    async def give_back(self) -> None:
        if self.limit is None:
            return
        day = utc_day()
        if self._redis is not None and time.monotonic() >= self._down_until:
            try:
                await self._redis.decr(self._key(day))
                return
            except Exception as exc:
                self._redis_failed(exc)
        if self._local.get(day, 0) > 0:
            self._local[day] -= 1

    def _redis_failed(self, exc: Exception) -> None:
        if time.monotonic() >= self._down_until:
            logger.warning("upstream budget: Redis failed (%s); counting in this process for %.0f s",
                           type(exc).__name__, RETRY_REDIS_AFTER_S)
        self._down_until = time.monotonic() + RETRY_REDIS_AFTER_S

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
