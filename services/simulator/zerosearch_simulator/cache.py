"""The result cache: Redis when configured (shared by replicas), an in-process LRU otherwise.

`get_or_compute(key, compute)` is the one entry point the engine uses. It guarantees
single-flight: N concurrent identical misses cause one `compute()`, within a process (a
shared future) and, with Redis, across replicas (a `SET NX` lock; the others wait for the
value to appear). If Redis fails, the cache reports itself degraded, the caller gets its
answer computed uncached, and Redis is tried again after a short pause, so the service
keeps answering and recovers on its own when Redis returns.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cachetools import TTLCache

logger = logging.getLogger(__name__)

# Values are JSON documents, kept as the bytes they are stored and sent as (the engine splices them into its
# responses without parsing them).
Compute = Callable[[], Awaitable[bytes]]
# A filled value, and whether it came from elsewhere (another replica's generation) rather than compute().
Filled = tuple[bytes, bool]
# v2: values carry the rendered `text` as well.
KEY_PREFIX = "zerosearch:v2:"
# After a Redis failure, skip Redis for this long instead of paying a timeout on every request.
RETRY_REDIS_AFTER_S = 1.0


class _SingleFlight:
    """In-process single-flight: one computation per key, shared by concurrent callers."""

    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Future[Filled]] = {}

    async def run(self, key: str, compute: Callable[[], Awaitable[Filled]]) -> tuple[Filled, bool]:
        """Returns (result, joined): joined is True when another caller's computation was reused."""
        existing = self._inflight.get(key)
        if existing is not None:
            return await asyncio.shield(existing), True
        future: asyncio.Future[Filled] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await compute()
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved: waiters may be gone
            raise
        else:
            future.set_result(value)
            return value, False
        finally:
            del self._inflight[key]


class Cache:
    """Base: counts hits and misses, single-flights misses."""

    kind = "none"

    def __init__(self, *, ttl_s: int, on_result: Callable[[str], None] | None = None,
                 on_error: Callable[[], None] | None = None) -> None:
        self.ttl_s = ttl_s
        self._on_result = on_result or (lambda result: None)
        self._on_error = on_error or (lambda: None)
        self._flights = _SingleFlight()

    async def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    async def set(self, key: str, value: bytes) -> None:
        raise NotImplementedError

    async def get_or_compute(self, key: str, compute: Compute) -> tuple[bytes, bool]:
        """(value, cached). cached is True when the value came from the cache or another caller's generation."""
        value = await self.get(key)
        if value is not None:
            self._on_result("hit")
            return value, True
        (value, from_elsewhere), joined = await self._flights.run(key, lambda: self._fill(key, compute))
        cached = joined or from_elsewhere
        self._on_result("hit" if cached else "miss")
        return value, cached

    async def _fill(self, key: str, compute: Compute) -> Filled:
        value = await compute()
        await self.set(key, value)
        return value, False

    async def status(self) -> str:
        """'ok', or 'degraded' when the cache store cannot be reached."""
        return "ok"

    async def close(self) -> None:
        pass


class MemoryCache(Cache):
    kind = "memory"

    def __init__(self, *, ttl_s: int, max_entries: int, **kwargs: Any) -> None:
        super().__init__(ttl_s=ttl_s, **kwargs)
        self._store: TTLCache[str, bytes] = TTLCache(maxsize=max_entries, ttl=ttl_s)

    async def get(self, key: str) -> bytes | None:
        return self._store.get(key)

    async def set(self, key: str, value: bytes) -> None:
        self._store[key] = value


class RedisCache(Cache):
    kind = "redis"

    def __init__(self, url: str, *, ttl_s: int, lock_ttl_s: float, wait_timeout_s: float,
                 **kwargs: Any) -> None:
        import redis.asyncio as redis

        super().__init__(ttl_s=ttl_s, **kwargs)
        self.url = url
        self.redis = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0,
                                          health_check_interval=10)
        self.lock_ttl_ms = int(lock_ttl_s * 1000)
        self.wait_timeout_s = wait_timeout_s
        self._down_until = 0.0
        self._lookups = _Coalescer(self._mget)

    # -- Redis with graceful degradation ------------------------------------------------------
    @property
    def degraded(self) -> bool:
        return time.monotonic() < self._down_until

    async def _call(self, op: str, *args: Any, **kwargs: Any) -> Any:
        """Run one Redis command; on failure count it, mark Redis down for a moment, raise _Down."""
        if self.degraded:
            raise _Down
        try:
            return await getattr(self.redis, op)(*args, **kwargs)
        except Exception as exc:  # redis.RedisError, OSError, timeouts: all mean "no cache right now"
            self._on_error()
            if not self.degraded:
                logger.warning("redis %s failed (%s: %s); answering uncached, retrying Redis in %.0f s",
                               op, type(exc).__name__, exc, RETRY_REDIS_AFTER_S)
            self._down_until = time.monotonic() + RETRY_REDIS_AFTER_S
            raise _Down from exc

    async def get(self, key: str) -> bytes | None:
        return await self._lookups.get(KEY_PREFIX + "doc:" + key)

    async def _mget(self, keys: list[str]) -> list[bytes | None]:
        try:
            return await self._call("mget", keys)
        except _Down:
            return [None] * len(keys)

    async def set(self, key: str, value: bytes) -> None:
        try:
            await self._call("set", KEY_PREFIX + "doc:" + key, value, ex=self.ttl_s)
        except _Down:
            pass

    async def _fill(self, key: str, compute: Compute) -> Filled:
        """Cross-replica single-flight: whoever takes the lock generates; the others wait for its value."""
        lock_key = KEY_PREFIX + "lock:" + key
        token = secrets.token_hex(8)
        deadline = time.monotonic() + self.wait_timeout_s
        delay = 0.02
        while True:
            try:
                if await self._call("set", lock_key, token, nx=True, px=self.lock_ttl_ms):
                    break  # ours: generate
            except _Down:
                return await compute(), False  # no Redis: answer uncached
            value = await self.get(key)
            if value is not None:
                return value, True
            if time.monotonic() > deadline:
                logger.warning("waited %.1f s for another replica's generation; generating here",
                               self.wait_timeout_s)
                break
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        # Keep the lock alive while we generate: a short TTL renewed by a live holder means a holder that
        # dies (a killed replica) stalls the others for at most one TTL, not for a whole generation timeout.
        renewer = asyncio.create_task(self._keep_lock(lock_key, token))
        try:
            # Double-check: the previous holder may have stored the value and released the lock between
            # our last look and our SET NX.
            value = await self.get(key)
            if value is not None:
                return value, True
            value = await compute()
            await self.set(key, value)
            return value, False
        finally:
            renewer.cancel()
            try:
                # Release only our own lock (a slow generation may have outlived it).
                await self._call("eval", _RELEASE_LOCK, 1, lock_key, token)
            except _Down:
                pass

    async def _keep_lock(self, lock_key: str, token: str) -> None:
        while True:
            await asyncio.sleep(self.lock_ttl_ms / 3000)
            try:
                if not await self._call("eval", _RENEW_LOCK, 1, lock_key, token, self.lock_ttl_ms):
                    return  # lost it (expired under a long Redis outage): nothing left to renew
            except _Down:
                pass

    async def status(self) -> str:
        self._down_until = 0.0  # readiness probes always look at Redis itself
        try:
            await self._call("ping")
        except _Down:
            return "degraded"
        return "ok"

    async def close(self) -> None:
        await self.redis.aclose()


class _Coalescer:
    """Coalesces concurrent lookups into MGETs, with one MGET in flight at a time.

    A Redis command costs about 60 µs of CPU in redis-py's asyncio client, more than the rest of a cache hit
    together, while an MGET of 16 keys costs about 11 µs per key. A lookup made while no MGET is in flight is
    sent in the next iteration of the event loop, with the lookups made in the same iteration; lookups made
    while one is in flight wait for it and go together in the next. So a lone lookup waits for nothing, and
    under load the batches grow with the load, with no timer to tune.
    """

    def __init__(self, mget: Callable[[list[str]], Awaitable[list[bytes | None]]]) -> None:
        self._mget = mget
        self._queue: list[tuple[str, asyncio.Future[bytes | None]]] = []
        self._sender: asyncio.Task[None] | None = None

    def get(self, key: str) -> asyncio.Future[bytes | None]:
        loop = asyncio.get_running_loop()
        # One future per caller, even for a repeated key: a caller that is cancelled cancels only its own.
        future: asyncio.Future[bytes | None] = loop.create_future()
        self._queue.append((key, future))
        if self._sender is None:
            self._sender = loop.create_task(self._send())  # starts after this iteration's other callbacks
        return future

    async def _send(self) -> None:
        batch: list[tuple[str, asyncio.Future[bytes | None]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                values = await self._mget([key for key, _ in batch])
                for (_, future), value in zip(batch, values, strict=True):
                    if not future.done():
                        future.set_result(value)
        finally:  # whatever happens (cancelled at shutdown), no caller is left waiting (None: answer as a miss)
            self._sender = None
            for _, future in [*batch, *self._queue]:
                if not future.done():
                    future.set_result(None)
            self._queue = []


class _Down(Exception):
    """Redis is unavailable right now."""


_RENEW_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
