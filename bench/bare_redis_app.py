"""The cache-hit baseline: a bare FastAPI app whose one POST endpoint does ONE Redis GET of a fixed key
and returns the stored JSON bytes as they are (no parsing, no validation, no middleware, no metrics).

Run by bench/cache_hit.py as `python -m uvicorn bench.bare_redis_app:app --workers 1 --log-level warning
--no-access-log`. BENCH_REDIS_URL and BENCH_KEY pick the Redis database and the key; the benchmark stores
the simulator's own cache-hit response there so both servers send bodies of the same size.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as redis
from fastapi import FastAPI, Request, Response

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
KEY = os.environ.get("BENCH_KEY", "bench:bare:value")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The same client options as the simulator's RedisCache.
    app.state.redis = redis.Redis.from_url(REDIS_URL, socket_timeout=1.0, socket_connect_timeout=1.0,
                                           health_check_interval=10)
    try:
        yield
    finally:
        await app.state.redis.aclose()


app = FastAPI(lifespan=lifespan)


@app.post("/v1/search")
async def search(request: Request) -> Response:
    raw = await request.app.state.redis.get(KEY)
    if raw is None:
        return Response(b'{"error": "no value at BENCH_KEY"}', status_code=404, media_type="application/json")
    return Response(raw, media_type="application/json")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
